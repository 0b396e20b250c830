"""`scream evaluate`: window and clip metrics, false alarms per hour on a continuous stream, and a
scene with screams inserted at known times, all scored by the edge's own int8 path and decisions."""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.classifier import Classifier
from edge.detector import DecisionParams, EventDetector, EventStarted
from edge.errors import ModelError
from edge.features import FeatureParams
from edge.pipeline import StreamingScorer, chunked
from train import metrics
from train.augment import colored_noise, lowpass, mix_at_snr, reverberate, telephone_band
from train.data import Clip, WaveformCache, load_dataset
from train.splits import read_split, relative_path
from train.windows import active_span, edge_windows

FloatArray = npt.NDArray[np.float32]
SCENE_SPACING_S = 12.0


@dataclass
class ClipScores:
    clip: Clip
    window_scores: npt.NDArray[np.float64]
    window_active: npt.NDArray[np.bool_]

    @property
    def peak(self) -> float:
        return float(self.window_scores.max()) if self.window_scores.size else 0.0


def _restrict_to_split(clips: list[Clip], splits_file: Path, split: str, base: Path) -> list[Clip]:
    wanted = set(read_split(splits_file, split, base))
    if not wanted:
        raise ValueError(f"{splits_file} has no rows for split {split!r}")
    return [c for c in clips if c.path.resolve() in wanted]


def score_clips(classifier: Classifier, clips: list[Clip], waves: list[FloatArray]) -> list[ClipScores]:
    side = classifier.sidecar
    out = []
    for clip, wave in zip(clips, waves, strict=True):
        cw = edge_windows(wave, side.features, window_frames=side.window_frames, hop_frames=side.hop_frames)
        scores = np.array([classifier.score(w) for w in cw.windows])
        out.append(ClipScores(clip, scores, cw.is_active))
    return out


Condition = Callable[[FloatArray, int, np.random.Generator], FloatArray]

# Recordings as other microphones, rooms and sites would make them. Every clip of the split, screams
# and non-screams alike, goes through each in turn. The overdrive lies outside what training
# augments by default; the others are fixed points inside its random ranges.
RECORDING_CONDITIONS: dict[str, Condition] = {
    "telephone band, 300-3400 Hz": lambda x, rate, rng: telephone_band(x, rate),
    "low-pass 3.8 kHz (an 8 kHz recording)": lambda x, rate, rng: lowpass(x, rate, 3800.0),
    "room reverberation, RT60 0.6 s": lambda x, rate, rng: reverberate(x, rate, rng, 0.6),
    "pink noise at 10 dB SNR": lambda x, rate, rng: np.clip(
        mix_at_snr(x, colored_noise(x.size, "pink", rate, rng), 10.0), -1.0, 1.0
    ).astype(np.float32),
    "-30 dB (distant or low-gain microphone)": lambda x, rate, rng: x * np.float32(10 ** (-30 / 20)),
    "overdriven: +20 dB, clipped at full scale": lambda x, rate, rng: np.clip(x * np.float32(10.0), -1.0, 1.0),
}


def window_groups(scored: list[ClipScores]) -> npt.NDArray[np.str_]:
    """The recording group of each window, in `split_windows`' order."""
    pos = [[s.clip.group] * int(s.window_active.sum()) for s in scored if s.clip.is_scream]
    neg = [[s.clip.group] * s.window_scores.size for s in scored if not s.clip.is_scream]
    return np.array([g for part in (*pos, *neg) for g in part], dtype=str)


def split_windows(scored: list[ClipScores]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Window labels and scores: the loud part of each scream clip, every window of the others."""
    pos = [s.window_scores[s.window_active] for s in scored if s.clip.is_scream]
    neg = [s.window_scores for s in scored if not s.clip.is_scream]
    n_pos, n_neg = sum(p.size for p in pos), sum(n.size for n in neg)
    scores = np.concatenate([*pos, *neg, np.zeros(0)])
    return np.r_[np.ones(n_pos, bool), np.zeros(n_neg, bool)], scores


def _condition_row(scored: list[ClipScores], on: float) -> dict[str, Any]:
    labels, scores = split_windows(scored)
    pos, neg = scores[labels], scores[~labels]
    both = pos.size > 0 and neg.size > 0
    screams = [s for s in scored if s.clip.is_scream]
    others = [s for s in scored if not s.clip.is_scream]
    return {
        "roc_auc": round(metrics.roc_auc(labels, scores), 4) if both else None,
        "recall_at_1pct_fpr": round(metrics.recall_at_fpr(labels, scores, 0.01), 4) if both else None,
        "scream_windows_at_on": round(float(np.mean(pos >= on)), 4) if pos.size else None,
        "non_scream_windows_at_on": round(float(np.mean(neg >= on)), 4) if neg.size else None,
        "screams_found": sum(s.peak >= on for s in screams),
        "screams": len(screams),
        "non_screams_firing": sum(s.peak >= on for s in others),
        "non_screams": len(others),
    }


def condition_metrics(
    classifier: Classifier,
    clips: list[Clip],
    waves: list[FloatArray],
    as_recorded: list[ClipScores],
    *,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per recording condition, after the split `as_recorded` (already scored): window ROC AUC and
    recall at 1% FPR, and at the shipped `on` the share of scream windows reached, of non-scream
    windows crossing it, and clips found / firing."""
    rate = classifier.sidecar.features.sample_rate_hz
    on = classifier.sidecar.thresholds.on
    out = {"as recorded": _condition_row(as_recorded, on)}
    for k, (name, condition) in enumerate(RECORDING_CONDITIONS.items(), start=1):
        changed = [
            condition(w, rate, np.random.default_rng([seed, k, i])) if w.size else w for i, w in enumerate(waves)
        ]
        out[name] = _condition_row(score_clips(classifier, clips, changed), on)
    return out


@dataclass(frozen=True)
class StreamScores:
    """One score per window hop of a replayed stream: scored once, decided many times."""

    scores: npt.NDArray[np.float64]
    start_s: npt.NDArray[np.float64]
    end_s: npt.NDArray[np.float64]
    seconds: float


def score_stream(classifier: Classifier, audio: FloatArray) -> StreamScores:
    """Replay audio (at the model rate) in 100 ms chunks through the edge's streaming scorer."""
    side = classifier.sidecar
    rate = side.features.sample_rate_hz
    scorer = StreamingScorer(classifier, side.features, hop_frames=side.hop_frames, source_rate_hz=rate)
    windows = [w for chunk in chunked(audio, rate // 10) for w in scorer.push(chunk)] + scorer.flush()
    return StreamScores(
        np.array([w.score for w in windows]),
        np.array([w.start_s for w in windows]),
        np.array([w.end_s for w in windows]),
        audio.size / rate,
    )


def decide(
    stream: StreamScores, decisions: DecisionParams
) -> tuple[list[EventStarted], list[tuple[float, float]], float]:
    """The live detector's decisions over scored windows: event starts, event spans, seconds."""
    detector = EventDetector(decisions)
    transitions = []
    for score, start_s, end_s in zip(stream.scores, stream.start_s, stream.end_s, strict=True):
        transitions += detector.update(float(score), float(start_s), float(end_s))
    transitions += detector.finish(stream.seconds)
    starts = [t for t in transitions if isinstance(t, EventStarted)]
    spans = [
        (t.event.start_s, t.event.end_s)
        for t in transitions
        if not isinstance(t, EventStarted) and t.event.end_s is not None
    ]
    return starts, spans, stream.seconds


def build_scene(
    background: FloatArray, screams: list[FloatArray], features: FeatureParams, rng: np.random.Generator
) -> tuple[FloatArray, list[dict[str, float]]]:
    """Insert each scream into the background every SCENE_SPACING_S at a random 0-20 dB local SNR."""
    rate = features.sample_rate_hz
    needed = int((len(screams) + 1) * SCENE_SPACING_S * rate)
    scene = np.resize(background, max(needed, background.size)).astype(np.float32)
    truth = []
    for k, scream in enumerate(screams):
        first, last = active_span(scream, features)
        at = int((k + 0.5) * SCENE_SPACING_S * rate)
        end = min(at + scream.size, scene.size)
        local = scene[at:end]
        snr = float(rng.uniform(0, 20))
        active_rms = float(np.sqrt(np.mean(scream[first:last] ** 2) + 1e-12))
        local_rms = float(np.sqrt(np.mean(local**2) + 1e-12))
        gain = local_rms * 10 ** (snr / 20) / active_rms if local_rms > 1e-5 else 0.3 / active_rms
        scene[at:end] = np.clip(local + gain * scream[: end - at], -1, 1)
        truth.append({"onset_s": (at + first) / rate, "end_s": (at + last) / rate, "snr_db": round(snr, 1)})
    return scene, truth


def stream_and_scene(
    clips: list[Clip], waves: list[FloatArray], features: FeatureParams, seed: int
) -> tuple[FloatArray, FloatArray, list[dict[str, float]], list[tuple[float, Clip]]]:
    """The split's non-screams back to back in a seeded order, that stream with its screams
    inserted, the inserted screams, and where each non-scream starts in the stream (seconds)."""
    rng = np.random.default_rng(seed)
    negatives = [(c, w) for c, w in zip(clips, waves, strict=True) if not c.is_scream]
    order = rng.permutation(len(negatives))
    stream = np.concatenate([negatives[i][1] for i in order]) if negatives else np.zeros(0, np.float32)
    starts = np.cumsum([0] + [negatives[i][1].size for i in order])[:-1] / features.sample_rate_hz
    layout = [(float(at), negatives[i][0]) for at, i in zip(starts, order, strict=True)]
    screams = [w for c, w in zip(clips, waves, strict=True) if c.is_scream]
    scene, truth = build_scene(stream, screams, features, rng)
    return stream, scene, truth, layout


def where_false_alarms_fire(
    starts: list[EventStarted], stream: StreamScores, layout: list[tuple[float, Clip]], window_s: float, base: Path
) -> dict[str, Any]:
    """For the non-scream stream: the clip each false alarm fired in, and whether its first window
    held the end of one clip and the start of the next (clips meet abruptly only in this stream),
    beside the share of all the stream's windows that do."""
    if not layout:
        return {"boundary_window_share": 0.0, "at_clip_boundary": 0, "fired_in": []}
    clip_starts = np.array([at for at, _ in layout])
    inner = clip_starts[1:]

    def straddles(t: float) -> bool:
        return bool(np.any((inner > t) & (inner < t + window_s)))

    rows = []
    for start in starts:
        t = start.event.start_s
        clip = layout[int(np.searchsorted(clip_starts, t, side="right")) - 1][1]
        rows.append(
            {
                "at_s": round(t, 2),
                "clip": relative_path(clip.path, base),
                "category": clip.category,
                "at_clip_boundary": straddles(t),
            }
        )
    share = float(np.mean([straddles(t) for t in stream.start_s])) if stream.start_s.size else 0.0
    return {
        "boundary_window_share": round(share, 3),
        "at_clip_boundary": sum(r["at_clip_boundary"] for r in rows),
        "fired_in": rows,
    }


@dataclass
class SceneMatch:
    """Alarms of a scene matched to its inserted screams."""

    detected: set[int]
    latencies_s: list[float]
    false_alarms: int


def match_events(
    starts: list[EventStarted], spans: list[tuple[float, float]], truth: list[dict[str, float]]
) -> SceneMatch:
    """An alarm whose span meets a scream (0.5 s slack either side) detects it; any other is false."""
    match = SceneMatch(set(), [], 0)
    for start, (span_start, span_end) in zip(starts, spans, strict=False):
        hit = next(
            (i for i, t in enumerate(truth) if span_start < t["end_s"] + 0.5 and span_end > t["onset_s"] - 0.5), None
        )
        if hit is None:
            match.false_alarms += 1
        elif hit not in match.detected:
            match.detected.add(hit)
            match.latencies_s.append(start.event.detected_s - truth[hit]["onset_s"])
    return match


SceneRun = tuple[list[EventStarted], list[tuple[float, float]], list[dict[str, float]], float]


def scene_metrics(
    starts: list[EventStarted], spans: list[tuple[float, float]], truth: list[dict[str, float]], seconds: float
) -> dict[str, Any]:
    return pooled_scene_metrics([(starts, spans, truth, seconds)])


def pooled_scene_metrics(runs: list[SceneRun]) -> dict[str, Any]:
    """Event recall, false alarms per hour and median onset-to-alarm over one or more scenes:
    (event starts, event spans, inserted screams, seconds) each."""
    detected = screams = false_alarms = 0
    seconds = 0.0
    latencies: list[float] = []
    missed: list[float] = []
    for starts, spans, truth, run_seconds in runs:
        m = match_events(starts, spans, truth)
        detected, screams, false_alarms = (
            detected + len(m.detected),
            screams + len(truth),
            false_alarms + m.false_alarms,
        )
        seconds += run_seconds
        latencies += m.latencies_s
        missed += [t["snr_db"] for i, t in enumerate(truth) if i not in m.detected]
    return {
        "scenes": len(runs),
        "screams": screams,
        "detected": detected,
        "event_recall": round(detected / max(screams, 1), 4),
        "false_alarms": false_alarms,
        "hours": round(seconds / 3600, 3),
        "false_alarms_per_hour": round(false_alarms / max(seconds / 3600, 1e-9), 3),
        "median_onset_to_alarm_s": round(float(np.median(latencies)), 3) if latencies else None,
        "missed_snr_db": sorted(missed),
    }


# Other `[detector]` choices a site can make at the shipped `on`, each replacing the model's own
# patience and smoothing.
DECISION_VARIANTS: tuple[dict[str, int], ...] = (
    {},  # 1 of 1
    {"patience_windows": 2, "patience_of": 2},
    {"smoothing_windows": 2},
    {"smoothing_windows": 3},
)


def decision_outcome(
    stream: StreamScores, scenes: list[tuple[StreamScores, list[dict[str, float]]]], decisions: DecisionParams
) -> tuple[list[EventStarted], dict[str, Any], dict[str, Any]]:
    """Under `decisions`: the alarms on the non-scream stream (all false), their count and rate, and
    the pooled scene metrics."""
    starts, _, seconds = decide(stream, decisions)
    stream_result = {
        "hours": round(seconds / 3600, 3),
        "false_alarms": len(starts),
        "false_alarms_per_hour": round(len(starts) / max(seconds / 3600, 1e-9), 3),
    }
    runs: list[SceneRun] = [(*decide(scored, decisions)[:2], truth, scored.seconds) for scored, truth in scenes]
    return starts, stream_result, pooled_scene_metrics(runs)


def decision_variants(
    stream: StreamScores,
    scenes: list[tuple[StreamScores, list[dict[str, float]]]],
    decisions: DecisionParams,
    *,
    shipped: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The stream and scene under the shipped `decisions` (first; `shipped` reuses their outcome
    when already known) and under each of DECISION_VARIANTS that differs from them, at the same `on`
    and `off`, so a site sees what patience or smoothing would cost and save."""
    candidates = [decisions] + [
        params
        for change in DECISION_VARIANTS
        if (params := replace(decisions, **{"patience_windows": 1, "patience_of": 1, "smoothing_windows": 1, **change}))
        != decisions
    ]
    rows = []
    for params in candidates:
        st, sc = shipped if params is decisions and shipped else decision_outcome(stream, scenes, params)[1:]
        rows.append(
            {
                "decisions": params.describe(),
                "shipped": params is decisions,
                "stream_false_alarms_per_hour": st["false_alarms_per_hour"],
                "scene_event_recall": sc["event_recall"],
                "scene_false_alarms_per_hour": sc["false_alarms_per_hour"],
                "median_onset_to_alarm_s": sc["median_onset_to_alarm_s"],
                # The counts behind the rates, so reports can be pooled exactly (scream crossval).
                "stream_false_alarms": st["false_alarms"],
                "scene_detected": sc["detected"],
                "scene_screams": sc["screams"],
                "scene_false_alarms": sc["false_alarms"],
            }
        )
    return rows


RANKING_METRICS: dict[str, Callable[[npt.NDArray[np.bool_], npt.NDArray[np.float64]], float]] = {
    "roc_auc": metrics.roc_auc,
    "pr_auc": metrics.average_precision,
    "recall_at_1pct_fpr": lambda y, s: metrics.recall_at_fpr(y, s, 0.01),
    "recall_at_5pct_fpr": lambda y, s: metrics.recall_at_fpr(y, s, 0.05),
}
# How the reports name them, in the order of their tables.
RANKING_LABELS = {
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "recall_at_1pct_fpr": "recall at 1% FPR",
    "recall_at_5pct_fpr": "recall at 5% FPR",
}


def _metric_block(
    labels: npt.ArrayLike, scores: npt.ArrayLike, threshold: float, groups: npt.ArrayLike, *, seed: int = 0
) -> dict[str, Any]:
    """Metrics at and around `threshold`, each ranking metric with a 95% interval from resampling
    whole recording groups (the split's unit: a group's clips and windows are not independent)."""
    c = metrics.confusion(labels, scores, threshold)
    block = ranking_block(labels, scores, groups, seed=seed)
    intervals = block.pop("interval_95")
    return block | {"f1_at_threshold": round(c.f1, 4), "confusion_at_threshold": asdict(c), "interval_95": intervals}


def ranking_block(
    labels: npt.ArrayLike, scores: npt.ArrayLike, groups: npt.ArrayLike, *, seed: int = 0
) -> dict[str, Any]:
    """The ranking metrics of RANKING_METRICS, each with its group-bootstrap 95% interval."""
    y, s = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=np.float64)
    block: dict[str, Any] = {"count": int(y.size)}
    intervals: dict[str, list[float]] = {}
    both_classes = bool(y.any() and not y.all())
    for name, statistic in RANKING_METRICS.items():
        block[name] = round(statistic(y, s), 4)
        if both_classes:
            low, high = metrics.cluster_bootstrap_interval(y, s, groups, statistic, seed=seed)
            intervals[name] = [round(low, 4), round(high, 4)]
    return block | {"interval_95": intervals}


@dataclass
class Evaluation:
    """A written evaluation: its report and every clip's window scores."""

    report: dict[str, Any]
    scored: list[ClipScores]
    baseline_scored: list[ClipScores] | None = None  # with `baseline`: its scores on the same windows


def evaluate(model: str | os.PathLike[str], data: str | os.PathLike[str], **kwargs: Any) -> dict[str, Any]:
    """Evaluate a model on a data set (or one split of it); writes report.md, report.json and plots
    and returns the report (arguments as `evaluate_with_scores`)."""
    return evaluate_with_scores(model, data, **kwargs).report


def evaluate_with_scores(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str],
    splits_file: str | os.PathLike[str] | None = None,
    split: str = "test",
    cache_dir: str = "",
    seed: int = 0,
    scenes: int = 4,
    make_plots: bool = True,
    baseline: str | os.PathLike[str] | None = None,
) -> Evaluation:
    """Evaluate a model on a data set (or one split of it); writes report.md, report.json and plots.

    With `baseline`, a second model is scored on the same clips and stream, and the report adds each
    ranking metric's difference with a paired 95% interval (`compare_with_baseline`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classifier = Classifier(model, expected_features=FeatureParams())
    side = classifier.sidecar
    decisions = side.decision_params()
    dataset = load_dataset(data)
    clips = _restrict_to_split(dataset.clips, Path(splits_file), split, dataset.base) if splits_file else dataset.clips
    cache = WaveformCache(
        cache_dir or Path.home() / ".cache" / "scream-detector" / "waves", side.features.sample_rate_hz
    )
    waves = [cache.load(c.path) for c in clips]
    scored = score_clips(classifier, clips, waves)

    on = side.thresholds.on
    w_labels, w_scores = split_windows(scored)
    c_labels = np.array([s.clip.is_scream for s in scored])
    c_scores = np.array([s.peak for s in scored])

    per_category: dict[str, dict[str, Any]] = {}
    for key_name, key in (("family", lambda c: c.family), ("category", lambda c: c.category or c.label)):
        groups: dict[str, list[float]] = collections.defaultdict(list)
        for s in scored:
            if not s.clip.is_scream:
                groups[key(s.clip)].append(s.peak)
        per_category[key_name] = {
            name: {
                "clips": len(p),
                "false_alarm_clips": int(np.sum(np.array(p) >= on)),
                "false_alarm_rate": round(float(np.mean(np.array(p) >= on)), 4),
            }
            for name, p in sorted(groups.items())
        }
    # Where the clips come from (site, microphone, recording practice): a model that only works for
    # some sources shows it here.
    per_source: dict[str, dict[str, int]] = {}
    for s in scored:
        row = per_source.setdefault(
            s.clip.source or "unknown", {"screams": 0, "screams_found": 0, "non_screams": 0, "false_alarm_clips": 0}
        )
        if s.clip.is_scream:
            row["screams"] += 1
            row["screams_found"] += int(s.peak >= on)
        else:
            row["non_screams"] += 1
            row["false_alarm_clips"] += int(s.peak >= on)
    missed = sorted(
        (
            {"path": relative_path(s.clip.path, dataset.base), "category": s.clip.category, "peak": round(s.peak, 3)}
            for s in scored
            if s.clip.is_scream and s.peak < on
        ),
        key=lambda r: r["peak"],
    )
    false_alarms = sorted(
        (
            {"path": relative_path(s.clip.path, dataset.base), "category": s.clip.category, "peak": round(s.peak, 3)}
            for s in scored
            if not s.clip.is_scream and s.peak >= on
        ),
        key=lambda r: -r["peak"],
    )

    conditions = condition_metrics(classifier, clips, waves, scored, seed=seed)
    # Scored once; the shipped decisions and each variant replay the same scores.
    stream, scene, truth, layout = stream_and_scene(clips, waves, side.features, seed)
    stream_scores = score_stream(classifier, stream)
    scene_scores = [(score_stream(classifier, scene), truth)]
    for k in range(1, scenes):  # the first scene is built on the stream above; the others reorder it
        _, scene, truth, _ = stream_and_scene(clips, waves, side.features, seed + k)
        scene_scores.append((score_stream(classifier, scene), truth))
    stream_starts, stream_result, scene_result = decision_outcome(stream_scores, scene_scores, decisions)
    stream_result |= where_false_alarms_fire(stream_starts, stream_scores, layout, side.window_s, dataset.base)
    low, high = metrics.poisson_rate_interval(stream_result["false_alarms"], stream_result["hours"])
    stream_result["false_alarms_per_hour_interval_95"] = [round(low, 3), round(high, 3)]
    variants = decision_variants(stream_scores, scene_scores, decisions, shipped=(stream_result, scene_result))
    against, base_scored = None, None
    if baseline:
        other = Classifier(baseline, expected_features=FeatureParams())
        against, base_scored = compare_with_baseline(other, clips, waves, scored, stream, seed)

    report: dict[str, Any] = {
        "model": {
            "path": str(model),
            "sha256": classifier.sha256,
            "size_bytes": Path(model).stat().st_size,
            "thresholds": asdict(side.thresholds),
            "operating_point": side.raw["thresholds"].get("validation"),
            "runtime": classifier.runtime,
        },
        "data": {
            "root": str(data),
            "split": split if splits_file else "all",
            "clips": len(clips),
            "screams": int(c_labels.sum()),
            "non_screams": int((~c_labels).sum()),
            "skipped": dataset.skipped,
        },
        "windows": _metric_block(w_labels, w_scores, on, window_groups(scored), seed=seed),
        "clips": _metric_block(c_labels, c_scores, on, [s.clip.group for s in scored], seed=seed),
        "negatives": per_category,
        "sources": dict(sorted(per_source.items())),
        "missed_screams": missed,
        "false_alarm_clips": false_alarms,
        "stream": stream_result,
        "scene": scene_result,
        "conditions": conditions,
        "decision_variants": variants,
        **({"baseline": against} if against else {}),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if make_plots:
        _plots(out, w_labels, w_scores, scored, on, Path(model))
    (out / "report.md").write_text(render_markdown(report, has_plots=make_plots))
    (out / "model_card.md").write_text(model_card(report, side.raw, report_dir=out))
    return Evaluation(report, scored, base_scored)


def compare_with_baseline(
    baseline: Classifier,
    clips: list[Clip],
    waves: list[FloatArray],
    scored: list[ClipScores],
    stream: FloatArray,
    seed: int,
) -> tuple[dict[str, Any], list[ClipScores]]:
    """The evaluated model against `baseline` on the same clips: each ranking metric of windows and
    clips for both, and their difference with a paired bootstrap interval over recording groups; and
    the continuous stream's false alarms under each model's own shipped decisions. Also returns the
    baseline's scores, window by window as `scored`."""
    base_side = baseline.sidecar
    base_scored = score_clips(baseline, clips, waves)
    labels, scores = split_windows(scored)
    base_labels, base_scores = split_windows(base_scored)
    same_cuts = [c.window_scores.size for c in scored] == [c.window_scores.size for c in base_scored]
    if not same_cuts or not np.array_equal(labels, base_labels):
        raise ModelError(
            f"baseline {baseline.model_path.name} cuts the clips into other windows "
            f"({base_side.window_frames} frames every {base_side.hop_frames}): only models with the same "
            "window and hop can be compared window by window"
        )
    base_stream = score_stream(baseline, stream)
    base_starts, _, _ = decide(base_stream, base_side.decision_params())
    comparison = {
        "path": str(baseline.model_path),
        "sha256": baseline.sha256,
        "windows": paired_rows(labels, scores, base_scores, window_groups(scored), seed=seed),
        "clips": paired_rows(
            np.array([c.clip.is_scream for c in scored]),
            np.array([c.peak for c in scored]),
            np.array([c.peak for c in base_scored]),
            [c.clip.group for c in scored],
            seed=seed,
        ),
        "stream_false_alarms": len(base_starts),
    }
    return comparison, base_scored


def paired_rows(
    labels: npt.ArrayLike, scores: npt.ArrayLike, baseline_scores: npt.ArrayLike, groups: npt.ArrayLike, *, seed: int
) -> dict[str, dict[str, Any]]:
    """Each ranking metric for both score sets on the same items, and their difference (scores
    minus baseline) with a paired bootstrap interval over `groups`."""
    y = np.asarray(labels, dtype=bool)
    a, b = np.asarray(scores, dtype=np.float64), np.asarray(baseline_scores, dtype=np.float64)
    rows: dict[str, dict[str, Any]] = {}
    for name, statistic in RANKING_METRICS.items():
        difference, low, high = metrics.paired_bootstrap_difference(y, a, b, groups, statistic, seed=seed)
        rows[name] = {
            "model": round(statistic(y, a), 4),
            "baseline": round(statistic(y, b), 4),
            "difference": round(difference, 4),
            "interval_95": [round(low, 4), round(high, 4)],
        }
    return rows


def _plots(
    out: Path,
    labels: npt.NDArray[np.bool_],
    scores: npt.NDArray[np.float64],
    scored: list[ClipScores],
    threshold: float,
    model: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    precision, recall = metrics.pr_curve(labels, scores)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    axes[0].plot(fpr, tpr)
    axes[0].set(
        xscale="log",
        xlim=(1e-3, 1),
        xlabel="false-positive rate (windows)",
        ylabel="recall",
        title=f"ROC (AUC {metrics.roc_auc(labels, scores):.3f})",
    )
    axes[1].plot(recall, precision)
    axes[1].set(xlabel="recall", ylabel="precision", title=f"PR (AP {metrics.average_precision(labels, scores):.3f})")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "roc_pr.png", dpi=110)
    plt.close(fig)

    families: dict[str, list[float]] = collections.defaultdict(list)
    for s in scored:
        families[s.clip.family].append(s.peak)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    bins = np.linspace(0, 1, 41)
    for name, peaks in sorted(families.items()):
        ax.hist(peaks, bins=bins, histtype="step", linewidth=1.5, density=True, label=f"{name} ({len(peaks)})")
    ax.axvline(threshold, color="k", linestyle="--", label=f"on threshold {threshold:.2f}")
    ax.set(xlabel="clip peak score", ylabel="density", title="Peak scores per category (test clips)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "score_histograms.png", dpi=110)
    plt.close(fig)

    history_file = model.parent / f"{model.stem}-run" / "history.json"
    if history_file.exists():
        history = json.loads(history_file.read_text())
        members = history.get("members", [history])  # an ensemble's run keeps one history per member
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
        for k, member in enumerate(members):
            tag = f" (member {k + 1})" if len(members) > 1 else ""
            for key in ("loss", "val_loss"):
                axes[0].plot(member.get(key, []), label=key + tag)
            for key in ("pr_auc", "val_pr_auc", "val_roc_auc"):
                axes[1].plot(member.get(key, []), label=key + tag)
        axes[0].set(xlabel="epoch", title="loss")
        axes[1].set(xlabel="epoch", title="AUC")
        for ax in axes:
            ax.legend(fontsize=8 if len(members) > 1 else None)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "training_curves.png", dpi=110)
        plt.close(fig)


def start_rule(t: dict[str, Any]) -> str:
    """How an event starts, from a sidecar's thresholds block."""
    m = int(t.get("smoothing_windows", 1))
    rule = f"{t.get('patience_windows', 1)} of the last {t.get('patience_of', 1)} windows reach `on`"
    return rule + (f", each window scored as the mean of the last {m} window scores" if m > 1 else "")


def variants_table(variants: list[dict[str, Any]]) -> list[str]:
    """Markdown rows for the decision variants (the shipped one in bold)."""
    lines = [
        "| `[detector]` decisions at the shipped `on` | stream false alarms/h | scene event recall "
        "| scene false alarms/h | median onset to alarm (s) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in variants:
        name = f"**{row['decisions']}** (shipped)" if row["shipped"] else row["decisions"]
        lines.append(
            f"| {name} | {row['stream_false_alarms_per_hour']} | {row['scene_event_recall']} "
            f"| {row['scene_false_alarms_per_hour']} | {row['median_onset_to_alarm_s']} |"
        )
    return lines


def interval_of(block: dict[str, Any], key: str) -> list[float] | None:
    """The 95% interval of `block[key]`, if the report has one (`interval_95` or `<key>_interval_95`)."""
    found = block.get(f"{key}_interval_95") or block.get("interval_95", {}).get(key)
    return list(found) if found else None


def _cell(block: dict[str, Any], key: str) -> str:
    """A metric with its 95% interval when the report has one: '0.9653 (0.941-0.983)'."""
    interval = interval_of(block, key)
    return f"{block[key]} ({interval[0]:.3f}-{interval[1]:.3f})" if interval else str(block[key])


def _rate_interval(stream: dict[str, Any]) -> str:
    interval = interval_of(stream, "false_alarms_per_hour")
    return f" (95% interval {interval[0]:.1f}-{interval[1]:.1f})" if interval else ""


def paired_table(comparison: dict[str, Any], this: str) -> list[str]:
    """Markdown table of `paired_rows` blocks ("windows", "clips"): each metric for both sides and
    the difference with its interval."""
    lines = [f"| metric | {this} | baseline | difference (95% interval) |", "| --- | ---: | ---: | ---: |"]
    for block in ("windows", "clips"):
        for key, label in RANKING_LABELS.items():
            row = comparison[block][key]
            low, high = row["interval_95"]
            lines.append(
                f"| {block[:-1]} {label} | {row['model']} | {row['baseline']} | "
                f"{row['difference']:+.4f} ({low:+.3f} to {high:+.3f}) |"
            )
    return lines


def baseline_section(report: dict[str, Any]) -> list[str]:
    """Markdown lines comparing the model with `--baseline`, if the report has one."""
    base = report.get("baseline")
    if not base:
        return []
    lines = [
        "",
        f"## Against the baseline `{Path(base['path']).name}` (sha256 `{base['sha256'][:12]}…`)",
        "Both models scored the same clips. Each difference (this model minus the baseline) has a 95% interval "
        "from resampling recording groups with both models meeting the same resamples; an interval that "
        "holds 0 is no evidence either way.",
        "",
        *paired_table(base, "this model"),
        "",
        f"Continuous non-scream stream, each model with its own shipped decisions: "
        f"{report['stream']['false_alarms']} false alarms against the baseline's {base['stream_false_alarms']}.",
    ]
    return lines


def render_markdown(report: dict[str, Any], *, has_plots: bool) -> str:
    w, c, st, sc = report["windows"], report["clips"], report["stream"], report["scene"]
    t = report["model"]["thresholds"]
    lines = [
        f"# Evaluation of `{Path(report['model']['path']).name}`",
        "",
        f"- sha256 `{report['model']['sha256'][:16]}…`, {report['model']['size_bytes']} bytes, "
        f"runtime `{report['model']['runtime']}`, thresholds on {t['on']} / off {t['off']}, an event starts "
        f"when {start_rule(t)}",
        f"- data: `{report['data']['root']}`, split **{report['data']['split']}**: {report['data']['clips']} clips "
        f"({report['data']['screams']} screams, {report['data']['non_screams']} non-screams)",
        "",
        "Metrics with a 95% interval from resampling whole recording groups (1000 resamples):",
        "",
        "| metric | windows | clips |",
        "| --- | ---: | ---: |",
    ]
    for key, label in (
        ("count", "count"),
        *RANKING_LABELS.items(),
        ("f1_at_threshold", "F1 at the on threshold"),
    ):
        lines.append(f"| {label} | {_cell(w, key)} | {_cell(c, key)} |")
    cw, cc = w["confusion_at_threshold"], c["confusion_at_threshold"]
    lines += [
        "",
        "Confusion at the on threshold (TP / FP / TN / FN): "
        f"windows {cw['true_positive']} / {cw['false_positive']} / {cw['true_negative']} / {cw['false_negative']}; "
        f"clips {cc['true_positive']} / {cc['false_positive']} / {cc['true_negative']} / {cc['false_negative']}.",
        "",
        "## Continuous non-scream stream (live decisions)",
        f"All non-scream clips of the split replayed as one {st['hours'] * 60:.1f}-minute stream: "
        f"**{st['false_alarms']} false alarms, {st['false_alarms_per_hour']} per hour**{_rate_interval(st)}."
        + (
            f" {st['at_clip_boundary']} of them started in a window holding the end of one clip and the start of "
            f"the next ({st['boundary_window_share']:.0%} of the stream's windows do): "
            + ", ".join(
                f"`{Path(f['clip']).name}` ({f['category']}{', boundary' if f['at_clip_boundary'] else ''})"
                for f in st["fired_in"]
            )
            + "."
            if st.get("fired_in")
            else ""
        ),
        "",
        "## Scene: screams inserted at known times, 0-20 dB over the local background",
        f"{sc.get('scenes', 1)} scene(s), each the split's non-screams in its own order with every scream of the "
        "split inserted at its own SNR, pooled:",
        "",
        f"- event recall **{sc['event_recall']}** ({sc['detected']} of {sc['screams']})",
        f"- false alarms {sc['false_alarms']} in {sc['hours'] * 60:.1f} minutes "
        f"({sc['false_alarms_per_hour']} per hour)",
        f"- median scream onset to alarm: {sc['median_onset_to_alarm_s']} s",
        "",
    ]
    if variants := report.get("decision_variants"):
        lines += [
            "Other decisions a site can set in `[detector]` (`patience_windows`/`patience_of`, `smoothing_windows`), "
            "replaying the same scored stream and scenes:",
            "",
            *variants_table(variants),
            "",
        ]
    lines += [
        "## Negatives that cause false alarms (clip peak at or above `on`)",
        "| family | clips | false-alarm clips | rate |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, row in report["negatives"]["family"].items():
        lines.append(f"| {name} | {row['clips']} | {row['false_alarm_clips']} | {row['false_alarm_rate']} |")
    worst = sorted(report["negatives"]["category"].items(), key=lambda kv: -kv[1]["false_alarm_clips"])[:8]
    lines += [
        "",
        "Worst fine categories: "
        + ", ".join(f"{k} {v['false_alarm_clips']}/{v['clips']}" for k, v in worst if v["false_alarm_clips"])
        or "none",
    ]
    lines += [
        "",
        "## By source (clip peak at or above `on`)",
        "| source | screams found | non-screams firing |",
        "| --- | ---: | ---: |",
    ]
    for name, row in report.get("sources", {}).items():
        lines.append(
            f"| {name} | {row['screams_found']}/{row['screams']} | {row['false_alarm_clips']}/{row['non_screams']} |"
        )
    if conditions := report.get("conditions"):
        lines += [
            "",
            "## Recording conditions (every clip of the split transformed, windows and clips at `on`)",
            "| condition | window ROC AUC | recall at 1% FPR | scream windows at `on` | non-scream windows at `on` "
            "| screams found | non-screams firing |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, row in conditions.items():
            lines.append(
                f"| {name} | {row['roc_auc']} | {row['recall_at_1pct_fpr']} | {row['scream_windows_at_on']} "
                f"| {row['non_scream_windows_at_on']} | {row['screams_found']}/{row['screams']} "
                f"| {row['non_screams_firing']}/{row['non_screams']} |"
            )
    lines += baseline_section(report)
    lines += ["", f"## Missed screams ({len(report['missed_screams'])})"]
    lines += [f"- `{Path(m['path']).name}` ({m['category']}), peak {m['peak']}" for m in report["missed_screams"][:20]]
    if has_plots:
        lines += [
            "",
            "## Plots",
            "",
            "![ROC and PR](roc_pr.png)",
            "",
            "![Score histograms](score_histograms.png)",
            "",
            "![Training curves](training_curves.png)",
        ]
    return "\n".join(lines) + "\n"


TARGETS = (
    ("test windows: ROC AUC", "windows", "roc_auc", ">=", 0.97),
    ("test windows: recall at 1% false-positive rate", "windows", "recall_at_1pct_fpr", ">=", 0.90),
    ("false alarms per hour, continuous non-scream stream", "stream", "false_alarms_per_hour", "<=", 0.5),
)


def _network_text(config: dict[str, Any]) -> str:
    one = (
        f"one 3x3 convolution and four depthwise-separable blocks (width {config.get('width')}), "
        + (
            "average pooling over time, a dense layer over the mel regions"
            if config.get("head") == "frequency"
            else "global average pooling"
        )
        + ", one sigmoid unit"
    )
    members = int(config.get("members", 1))
    if members > 1:
        return (
            f"the mean of {members} CNNs trained alike from seeds {config.get('seed')}-"
            f"{int(config.get('seed', 0)) + members - 1} (one int8 model), each of {one}"
        )
    return f"a CNN of {one}"


def _epochs_text(epochs: Any) -> str:
    if isinstance(epochs, list):
        return f"{'/'.join(map(str, epochs))} epochs (per member)"
    return f"{epochs} epochs"


def _speed_text(training: dict[str, Any]) -> str:
    augment = training.get("augment", {})
    if not augment.get("speed_probability"):
        return ""
    low, high = augment.get("speed_range", (0.85, 1.18))
    return f", speed and pitch {low}-{high}x on {augment['speed_probability']:.0%} of excerpts"


def model_card(report: dict[str, Any], sidecar: dict[str, Any], *, report_dir: Path) -> str:
    """The README's model card section, rendered from the sidecar and the evaluation report."""
    training = sidecar.get("training", {})
    data = training.get("data", {})
    config = training.get("config", {})
    w, c, st, sc = report["windows"], report["clips"], report["stream"], report["scene"]
    t = sidecar["thresholds"]
    agreement = sidecar.get("int8_check", {})
    lines = [
        f"## Model card: `{sidecar['name']}`",
        "",
        f"- **File**: `models/{sidecar['name']}.tflite`, {sidecar['size_bytes']} bytes, full-integer int8 "
        f"(int8 input and output), sha256 `{sidecar['sha256'][:16]}…`; sidecar `models/{sidecar['name']}.json`.",
        f"- **Network**: {_network_text(config)}; input one log-mel window of "
        f"{sidecar['window']['frames']} frames x {sidecar['features']['mel_bands']} bands "
        f"({(sidecar['window']['frames'] - 1) * 10 + 25} ms), scored every {sidecar['window']['hop_frames'] * 10} ms.",
        "- **Intended use**: raising an alarm for human screams (distress, fear) near a microphone, with a person "
        "or an automation checking the event. Not for identifying people, not for evidence, and not a "
        "replacement for other alarms.",
        f"- **Training data**: `{data.get('root')}`: {data.get('clips', {}).get('scream')} screams "
        f"({data.get('minutes', {}).get('scream')} min) and {data.get('clips', {}).get('non_scream')} non-screams "
        f"({data.get('minutes', {}).get('non_scream')} min), split by group (no group on two sides): "
        + ", ".join(
            f"{k} {v['clips']} clips / {v['screams']} screams / {v['groups']} groups"
            for k, v in data.get("splits", {}).items()
        )
        + ".",
        f"- **Training**: `scream train` with its defaults: balanced batches, hard negatives weighted "
        f"x{config.get('hard_negative_weight')}, augmentation (gain, background and coloured-noise mixing at random "
        f"SNR, band-limiting incl. the telephone band, reverberation, time shift{_speed_text(training)}, "
        f"SpecAugment), Adam, binary "
        f"cross-entropy with label smoothing {config.get('label_smoothing')}, early stopping on validation PR AUC "
        f"after {_epochs_text(training.get('epochs_run'))}; {training.get('seconds')} s on this 2-core machine.",
        f"- **Operating point**: on {t['on']}, off {t['off']}; an event starts when {start_rule(t)}. Chosen on "
        f"{t.get('chosen_by', '')}."
        + (
            f" There: event recall {v['event_recall']}, {v['false_alarms_per_hour']} false alarms per hour, median "
            f"onset to alarm {v['median_onset_to_alarm_s']} s (every candidate is in the sidecar)."
            if (v := t.get("validation"))
            else ""
        ),
        f"- **int8 against float** on {agreement.get('windows')} test windows: decisions agree on "
        f"{agreement.get('decision_agreement', 0):.2%}, largest score difference "
        f"{agreement.get('max_abs_score_difference')}.",
        "",
        f"Test split (never seen in training or threshold choice; {report['data']['clips']} clips, "
        f"{report['data']['screams']} screams), scored by the edge's own int8 path and live decisions:",
        "",
        "| metric (95% interval, resampling recording groups) | windows | clips |",
        "| --- | ---: | ---: |",
    ]
    for key, label in (*RANKING_LABELS.items(), ("f1_at_threshold", "F1 at `on`")):
        lines.append(f"| {label} | {_cell(w, key)} | {_cell(c, key)} |")
    lines += [
        "",
        f"- Continuous non-scream stream ({st['hours'] * 60:.1f} min of the test split's non-screams back to back): "
        f"**{st['false_alarms']} false alarms = {st['false_alarms_per_hour']} per hour**{_rate_interval(st)}"
        + (
            f"; {st['at_clip_boundary']} of them started in a window where one clip ends and the next begins, "
            f"which {st['boundary_window_share']:.0%} of the stream's windows hold (clips meet abruptly there, "
            "unlike sounds in a room)."
            if st.get("fired_in")
            else "."
        ),
        f"- Scene ({sc.get('scenes', 1)} reorderings of that stream, each with the {report['data']['screams']} test "
        f"screams inserted at 0-20 dB over the local background, pooled): event recall **{sc['event_recall']}** "
        f"({sc['detected']} of {sc['screams']}), {sc['false_alarms_per_hour']} false alarms per hour, "
        f"median scream onset to alarm {sc['median_onset_to_alarm_s']} s.",
        "",
        "| target (DESIGN.md) | measured | 95% interval | met |",
        "| --- | ---: | ---: | :---: |",
    ]
    for label, block, key, op, target in TARGETS:
        value = report[block][key]
        met = value >= target if op == ">=" else value <= target
        interval = interval_of(report[block], key)
        span = f"{interval[0]:.3g}-{interval[1]:.3g}" if interval else ""
        lines.append(f"| {label} {op} {target} | {value} | {span} | {'yes' if met else '**no**'} |")
    families = report["negatives"]["family"]
    worst = sorted(families.items(), key=lambda kv: -kv[1]["false_alarm_rate"])
    lines += [
        "",
        "**Limitations.** Most training screams are acted or game death cries; few are real recordings, and "
        "the test split has only a few dozen screams from fewer recording groups, so every number above has "
        "wide error bars (the 95% intervals above). "
        "Non-screams that still fire (clip peak at or above `on`): "
        + ", ".join(f"{k} {v['false_alarm_clips']}/{v['clips']}" for k, v in worst if v["false_alarm_clips"])
        + "."
        + (
            f" At {st['false_alarms_per_hour']} false alarms per hour the model is far from the 0.5 target: on a "
            "real site use schedules and the loudness gate, raise `[detector] on_threshold`, the patience or the "
            "smoothing where alarms are too frequent, and review the saved clips before acting on alarms."
            if st["false_alarms_per_hour"] > 0.5
            else ""
        ),
    ]
    if variants := report.get("decision_variants"):
        lines += [
            "",
            "Fewer false alarms for later, fewer alarms: the same test stream and scenes under other `[detector]` "
            "decisions (patience, or smoothing: the mean score of the last m windows meets the thresholds):",
            "",
            *variants_table(variants),
        ]
    if conditions := report.get("conditions"):
        lines += [
            "",
            "Other microphones and rooms: every test clip transformed, same model and `on` (more in the full report):",
            "",
            "| recording condition | window ROC AUC | recall at 1% FPR | screams found | non-screams firing |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {name} | {row['roc_auc']} | {row['recall_at_1pct_fpr']} | {row['screams_found']}/{row['screams']} "
            f"| {row['non_screams_firing']}/{row['non_screams']} |"
            for name, row in conditions.items()
        ]
    lines += [
        "",
        f"Sources and licences of the training data ({len(data.get('sources', {}))} sources):",
        "",
        "| source | licence | screams | non-screams |",
        "| --- | --- | ---: | ---: |",
    ]
    for source, entry in sorted(data.get("sources", {}).items()):
        licence = str(entry.get("licence", "")).replace("|", "/")
        lines.append(f"| {source} | {licence} | {entry.get('scream', 0)} | {entry.get('non_scream', 0)} |")
    rel = report_dir.as_posix()
    lines += [
        "",
        f"Full report: [`{rel}/report.md`]({rel}/report.md) (plots, per-category false alarms, missed screams).",
    ]
    return "\n".join(lines) + "\n"
