"""`scream evaluate`: window and clip metrics, false alarms per hour on a continuous stream, and a
scene with screams inserted at known times, all scored by the edge's own int8 path and decided by
the decisions `listen` runs with the default config (edge.detector, the loudness gate included).

Streams and scenes are train/scenes.py's; the Markdown, plots and model card train/report.py's.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.classifier import Classifier
from edge.config import DetectorConfig, parse_config
from edge.features import FeatureParams
from edge.pipeline import detection_settings
from train import metrics
from train.augment import colored_noise, lowpass, mix_at_snr, reverberate, telephone_band
from train.data import Clip, WaveformCache, load_dataset
from train.report import model_card, plots, render_markdown
from train.scenes import (
    StreamScores,
    audited_headline,
    curve_headline,
    curve_thresholds,
    decide,
    decision_outcome,
    decision_variants,
    paired_headline,
    scene_curve,
    score_stream,
    stream_and_scene,
    where_false_alarms_fire,
)
from train.splits import read_split, relative_path
from train.windows import edge_windows

FloatArray = npt.NDArray[np.float32]


@dataclass
class ClipScores:
    clip: Clip
    window_scores: npt.NDArray[np.float64]
    window_active: npt.NDArray[np.bool_]

    @property
    def peak(self) -> float:
        return float(self.window_scores.max()) if self.window_scores.size else 0.0


def restrict_to_split(clips: list[Clip], splits_file: Path, split: str, base: Path) -> list[Clip]:
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
    on = classifier.sidecar.operating_point.on_threshold
    out = {"as recorded": _condition_row(as_recorded, on)}
    for k, (name, condition) in enumerate(RECORDING_CONDITIONS.items(), start=1):
        changed = [
            condition(w, rate, np.random.default_rng([seed, k, i])) if w.size else w for i, w in enumerate(waves)
        ]
        out[name] = _condition_row(score_clips(classifier, clips, changed), on)
    return out


RANKING_METRICS: dict[str, metrics.RankedStatistic] = {
    "roc_auc": metrics.Ranking.roc_auc,
    "pr_auc": metrics.Ranking.average_precision,
    "recall_at_1pct_fpr": lambda r: r.recall_at_fpr(0.01),
    "recall_at_5pct_fpr": lambda r: r.recall_at_fpr(0.05),
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
    ranking = metrics.rank(y, s)
    block: dict[str, Any] = {"count": int(y.size)} | {
        name: round(statistic(ranking), 4) for name, statistic in RANKING_METRICS.items()
    }
    intervals: dict[str, list[float]] = {}
    if y.any() and not y.all():
        found = metrics.cluster_bootstrap_intervals(y, s, groups, RANKING_METRICS, seed=seed)
        intervals = {name: [round(low, 4), round(high, 4)] for name, (low, high) in found.items()}
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
    level_spread_db: float = 0.0,
    hop_ms: int = 0,
) -> Evaluation:
    """Evaluate a model on a data set (or one split of it); writes report.md, report.json and plots.

    With `baseline`, a second model is scored on the same clips, stream and scenes, and the report adds
    each ranking metric's difference with a paired 95% interval (`compare_with_baseline`).
    `level_spread_db`: the stream's and scenes' non-screams each at a random gain within +-that
    many dB (train/scenes.py stream_and_scene); 0 keeps their recorded levels. `hop_ms` > 0: the
    stream and scenes are decided as `listen` decides with `[detector] hop_ms` set to it (windows that
    often, patience and smoothing over the same span of time); the clips' window metrics keep the
    model's hop."""
    site = parse_config({"detector": {"hop_ms": hop_ms}}).detector  # validated as a config file's would be
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classifier = Classifier(model, expected_features=FeatureParams())
    side = classifier.sidecar
    # What `listen` runs with the default config (and `hop_ms`), gate included.
    decisions, hop = detection_settings(side, site)
    dataset = load_dataset(data)
    clips = restrict_to_split(dataset.clips, Path(splits_file), split, dataset.base) if splits_file else dataset.clips
    cache = WaveformCache.at(cache_dir, side.features.sample_rate_hz)
    waves = [cache.load(c.path) for c in clips]
    scored = score_clips(classifier, clips, waves)

    on = side.operating_point.on_threshold
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
    other = Classifier(baseline, expected_features=FeatureParams()) if baseline else None
    stream, scene, truth, layout = stream_and_scene(clips, waves, side.features, seed, level_spread_db=level_spread_db)
    stream_scores = score_stream(classifier, stream, hop_frames=hop)
    base_hop = detection_settings(other.sidecar, site)[1] if other is not None else 0
    scene_scores, base_scene_scores = [], []
    for k in range(scenes):  # the first scene is built on the stream above; the others reorder it
        if k:
            _, scene, truth, _ = stream_and_scene(
                clips, waves, side.features, seed + k, level_spread_db=level_spread_db
            )
        scene_scores.append((score_stream(classifier, scene, hop_frames=hop), truth))
        if other is not None:  # scored now: a scene's audio is not kept
            base_scene_scores.append((score_stream(other, scene, hop_frames=base_hop), truth))
    del scene
    curve = scene_curve(scene_scores, decisions, curve_thresholds(scene_scores))
    stream_starts, stream_result, scene_result = decision_outcome(stream_scores, scene_scores, decisions)
    stream_result |= where_false_alarms_fire(stream_starts, stream_scores, layout, side.window_s, dataset.base)
    low, high = metrics.poisson_rate_interval(stream_result["false_alarms"], stream_result["hours"])
    stream_result["false_alarms_per_hour_interval_95"] = [round(low, 3), round(high, 3)]
    variants = decision_variants(stream_scores, scene_scores, decisions, shipped=(stream_result, scene_result))
    against, base_scored = None, None
    if other is not None:
        against, base_scored = compare_with_baseline(
            other, clips, waves, scored, stream, base_scene_scores, seed, site=site
        )
        # The two curves over the same scenes, paired as crossval pairs its folds' (one split here).
        against["headline"] = paired_headline([curve], [against["scene_curve"]], seed=seed)
        against["headline_audited"] = audited_headline([curve], [against["scene_curve"]], seed=seed)

    report: dict[str, Any] = {
        "model": {
            "path": str(model),
            "sha256": classifier.sha256,
            "size_bytes": Path(model).stat().st_size,
            "thresholds": side.operating_point.to_sidecar(),
            "decisions": {
                "describe": decisions.describe(),
                "loudness_gate_dbfs": decisions.loudness_gate_dbfs,
                "noise_floor_margin_db": decisions.noise_floor_margin_db,
                "hop_ms": round(hop * side.features.hop_ms),
                "model_hop_ms": round(side.hop_frames * side.features.hop_ms),
            },
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
        "scene_curve": curve,
        "scene_headline": curve_headline([curve], seed=seed),
        "scene_headline_audited": audited_headline([curve], seed=seed),
        "level_spread_db": level_spread_db,
        **({"baseline": against} if against else {}),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if make_plots:
        plots(out, w_labels, w_scores, scored, on, Path(model))
    (out / "report.md").write_text(render_markdown(report, has_plots=make_plots))
    (out / "model_card.md").write_text(model_card(report, side.raw, report_dir=out))
    return Evaluation(report, scored, base_scored)


def compare_with_baseline(
    baseline: Classifier,
    clips: list[Clip],
    waves: list[FloatArray],
    scored: list[ClipScores],
    stream: FloatArray,
    scenes: list[tuple[StreamScores, list[dict[str, Any]]]],
    seed: int,
    *,
    site: DetectorConfig | None = None,
) -> tuple[dict[str, Any], list[ClipScores]]:
    """The evaluated model against `baseline` on the same clips: each ranking metric of windows and
    clips for both, and their difference with a paired bootstrap interval over recording groups; and
    the continuous stream's false alarms under each model's own shipped decisions, and the baseline's
    operating curve on the same scenes (`scenes`: as the baseline scored them), both decided with
    `site` (the default config if None). Also returns the baseline's scores, clip by clip as
    `scored`. A baseline that cuts the clips into other windows (another window or hop) is compared
    on clips, stream and scenes only: its "windows" block is None and `window_cut` says why."""
    base_side = baseline.sidecar
    base_scored = score_clips(baseline, clips, waves)
    labels, scores = split_windows(scored)
    base_labels, base_scores = split_windows(base_scored)
    same_cuts = [c.window_scores.size for c in scored] == [c.window_scores.size for c in base_scored]
    same_windows = same_cuts and np.array_equal(labels, base_labels)
    base_decisions, base_hop = detection_settings(base_side, site)
    base_stream = score_stream(baseline, stream, hop_frames=base_hop)
    base_starts, _, _ = decide(base_stream, base_decisions)
    base_curve = scene_curve(scenes, base_decisions, curve_thresholds(scenes))
    comparison = {
        "path": str(baseline.model_path),
        "sha256": baseline.sha256,
        "windows": paired_rows(labels, scores, base_scores, window_groups(scored), seed=seed) if same_windows else None,
        "window_cut": window_cut(base_side),
        "clips": paired_rows(
            np.array([c.clip.is_scream for c in scored]),
            np.array([c.peak for c in scored]),
            np.array([c.peak for c in base_scored]),
            [c.clip.group for c in scored],
            seed=seed,
        ),
        "stream_false_alarms": len(base_starts),
        "scene_curve": base_curve,
        "scene_headline": curve_headline([base_curve], seed=seed),
    }
    return comparison, base_scored


def window_cut(side: Any) -> str:
    """How a model cuts audio into windows, as reports name it."""
    return f"{side.window_frames} frames every {side.hop_frames}"


def paired_rows(
    labels: npt.ArrayLike, scores: npt.ArrayLike, baseline_scores: npt.ArrayLike, groups: npt.ArrayLike, *, seed: int
) -> dict[str, dict[str, Any]]:
    """Each ranking metric for both score sets on the same items, and their difference (scores
    minus baseline) with a paired bootstrap interval over `groups`."""
    y = np.asarray(labels, dtype=bool)
    a, b = np.asarray(scores, dtype=np.float64), np.asarray(baseline_scores, dtype=np.float64)
    ranked_a, ranked_b = metrics.rank(y, a), metrics.rank(y, b)
    paired = metrics.paired_bootstrap_differences(y, a, b, groups, RANKING_METRICS, seed=seed)
    return {
        name: {
            "model": round(statistic(ranked_a), 4),
            "baseline": round(statistic(ranked_b), 4),
            "difference": round(paired[name][0], 4),
            "interval_95": [round(paired[name][1], 4), round(paired[name][2], 4)],
        }
        for name, statistic in RANKING_METRICS.items()
    }
