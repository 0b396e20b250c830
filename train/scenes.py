"""Continuous audio for judging decisions: a split's non-screams back to back (the stream), the same
with its screams inserted at known times (a scene), scored once by the edge's streaming path and
decided as often as needed by edge.detector's decisions, the loudness gate included, exactly as
`listen` decides. Used by `scream evaluate`, the operating-point search and `scream crossval`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge.classifier import ModelSidecar
from edge.detector import DecisionParams, Detector, EventEnded, EventStarted, EventVetoed, VetoedEnded
from edge.features import FeatureParams
from edge.pipeline import StreamingScorer, WindowScore, WindowScorer, chunked, decide_windows, detection_settings
from train.data import Clip
from train.splits import relative_path
from train.windows import active_span

FloatArray = npt.NDArray[np.float32]


SCENE_SPACING_S = 12.0


class SidecarScorer(WindowScorer, Protocol):
    """A window scorer with its model's sidecar (the int8 Classifier, or a float twin of it)."""

    @property
    def sidecar(self) -> ModelSidecar: ...


@dataclass(frozen=True)
class StreamScores:
    """One score (and loudness) per window hop of a replayed stream: scored once, decided many times."""

    windows: list[WindowScore]
    seconds: float

    @property
    def start_s(self) -> npt.NDArray[np.float64]:
        return np.array([w.start_s for w in self.windows])


def score_stream(classifier: SidecarScorer, audio: FloatArray, *, hop_frames: int = 0) -> StreamScores:
    """Replay audio (at the model rate) in 100 ms chunks through the edge's streaming scorer, at the
    hop `listen` uses with the default config, or every `hop_frames` feature frames."""
    side = classifier.sidecar
    rate = side.features.sample_rate_hz
    hop = hop_frames or detection_settings(side)[1]
    scorer = StreamingScorer(classifier, side.features, hop_frames=hop, source_rate_hz=rate)
    windows = [w for chunk in chunked(audio, rate // 10) for w in scorer.push(chunk)] + scorer.flush()
    return StreamScores(windows, audio.size / rate)


def decide(
    stream: StreamScores, decisions: DecisionParams
) -> tuple[list[EventStarted], list[tuple[float, float]], float]:
    """The live detector's decisions (edge.detector, gate included) over scored windows: event
    starts, event spans, seconds."""
    detector = Detector(decisions)
    transitions = [t for d in decide_windows(detector, stream.windows) for t in d.transitions]
    transitions += detector.finish(stream.seconds)
    starts = [t for t in transitions if isinstance(t, EventStarted)]
    spans = [
        (t.event.start_s, t.event.end_s) for t in transitions if isinstance(t, EventEnded) and t.event.end_s is not None
    ]
    return starts, spans, stream.seconds


Verdict = tuple[float, float]  # a verdict's windows: (first hit start, detection time) in stream s


def decide_verdicts(
    stream: StreamScores, decisions: DecisionParams, attempts: int = 1
) -> tuple[list[EventStarted], list[tuple[float, float]], list[list[Verdict]], float]:
    """`decide` with a second stage that passes nothing: the candidate events, their spans, and for
    each candidate the windows of every verdict the live detector asks for with `verify_attempts`
    = `attempts` (the first at its start; more while it lasts vetoed), and the seconds. Verdicts never
    change a candidate's span, so one run serves every verifier threshold: at a threshold, a
    candidate fires at the first of its verdicts whose score passes (train/teacher_row.py
    `cascade_curve`, train/verification.py `Judged`)."""
    asked: list[Verdict] = []

    def verify(start_s: float, detected_s: float) -> float:
        asked.append((start_s, detected_s))
        return 0.0

    detector = Detector(decisions, verify=verify, verify_threshold=1.0, verify_attempts=attempts)
    transitions = [t for d in decide_windows(detector, stream.windows) for t in d.transitions]
    transitions += detector.finish(stream.seconds)
    events = [t.event for t in transitions if isinstance(t, EventVetoed)]
    spans = [
        (t.event.start_s, t.event.end_s)
        for t in transitions
        if isinstance(t, VetoedEnded) and t.event.end_s is not None
    ]
    verdicts, at = [], 0
    for event in events:
        verdicts.append(asked[at : at + event.verdicts])
        at += event.verdicts
    return [EventStarted(e) for e in events], spans, verdicts, stream.seconds


def build_scene(
    background: FloatArray, screams: list[FloatArray], features: FeatureParams, rng: np.random.Generator
) -> tuple[FloatArray, list[dict[str, Any]]]:
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
    clips: list[Clip], waves: list[FloatArray], features: FeatureParams, seed: int, *, level_spread_db: float = 0.0
) -> tuple[FloatArray, FloatArray, list[dict[str, Any]], list[tuple[float, Clip]]]:
    """The split's non-screams back to back in a seeded order, that stream with its screams
    inserted, the inserted screams, and where each non-scream starts in the stream (seconds).
    `level_spread_db` > 0: each non-scream at a random gain within +-that many dB (clipped at full
    scale), as sounds nearer and farther from a microphone; 0 keeps the recorded levels."""
    rng = np.random.default_rng(seed)
    negatives = [(c, w) for c, w in zip(clips, waves, strict=True) if not c.is_scream]
    order = rng.permutation(len(negatives))
    if level_spread_db > 0:
        gains = 10 ** (rng.uniform(-level_spread_db, level_spread_db, len(negatives)) / 20)
        negatives = [(c, np.clip(w * np.float32(g), -1, 1)) for (c, w), g in zip(negatives, gains, strict=True)]
    stream = np.concatenate([negatives[i][1] for i in order]) if negatives else np.zeros(0, np.float32)
    starts = np.cumsum([0] + [negatives[i][1].size for i in order])[:-1] / features.sample_rate_hz
    layout = [(float(at), negatives[i][0]) for at, i in zip(starts, order, strict=True)]
    screams = [(c, w) for c, w in zip(clips, waves, strict=True) if c.is_scream]
    scene, truth = build_scene(stream, [w for _, w in screams], features, rng)
    for t, (clip, _) in zip(truth, screams, strict=True):
        t["source"] = clip.source or clip.group  # whose recording it is, for intervals over sources
        t["teacher_scream"] = clip.teacher_scream  # the corpus audit, for the headline on audited screams
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

    detected: dict[int, float]  # inserted scream -> its onset to the alarm that found it (s)
    false_alarms: int

    @property
    def latencies_s(self) -> list[float]:
        return list(self.detected.values())


def matched_scream(span: tuple[float, float], truth: list[dict[str, float]]) -> int | None:
    """The first inserted scream an alarm's span meets (0.5 s slack either side), if any."""
    span_start, span_end = span
    return next(
        (i for i, t in enumerate(truth) if span_start < t["end_s"] + 0.5 and span_end > t["onset_s"] - 0.5), None
    )


def match_events(
    starts: list[EventStarted], spans: list[tuple[float, float]], truth: list[dict[str, float]]
) -> SceneMatch:
    """An alarm whose span meets a scream (0.5 s slack either side) detects it; any other is false."""
    match = SceneMatch({}, 0)
    for start, span in zip(starts, spans, strict=False):
        hit = matched_scream(span, truth)
        if hit is None:
            match.false_alarms += 1
        elif hit not in match.detected:
            match.detected[hit] = start.event.detected_s - truth[hit]["onset_s"]
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


# -- the operating curve: recall against false alarms per hour, over every `on` ------------------
FALSE_ALARM_BUDGETS = (2.0, 5.0)  # per hour: the headline's "event recall at <= 2 and <= 5 false alarms/h"
RECALL_TARGET = 0.8  # the headline's "false alarms per hour at recall 0.8"
CURVE_POINTS = 40
CURVE_FLOOR = 0.8  # the lowest quantile of the scenes' window scores tried as `on`


FLOAT_TOP = 1 - 1e-6  # the highest candidate threshold for float scores (a float model, a teacher)
FLOAT_DIGITS = 7


def check_floor(floor: float) -> None:
    """Refuse a `curve_thresholds` floor that is not a quantile at or under the default grid's."""
    if not 0.0 < floor <= CURVE_FLOOR:
        raise ValueError(f"the grid's floor must be a quantile in (0, {CURVE_FLOOR}], got {floor}")


def curve_thresholds(
    scenes: list[tuple[StreamScores, list[dict[str, Any]]]],
    points: int = CURVE_POINTS,
    *,
    top: float = 0.995,
    digits: int = 4,
    floor: float = CURVE_FLOOR,
) -> list[float]:
    """Candidate `on`s: the scenes' window scores at quantiles from the 80th to the 99.99th
    percentile (where alarms start), as distinct thresholds in (0.01, `top`) to `digits` decimals.
    A `floor` under 0.8 adds five quantiles evenly from it up to the 80th, so the grid holds every
    default point and lower ones (a cascade's student may raise candidates far more often than a
    site could take alarms, since the verifier decides). The defaults suit an int8 output (steps of
    1/256 up to 0.996); a float model's scores run on towards 1 and want a higher top and more digits."""
    check_floor(floor)
    scores = np.array([w.score for scored, _ in scenes for w in scored.windows])
    if scores.size == 0:
        return []
    quantiles = 1 - np.geomspace(0.2, 1e-4, points)  # from the 80th percentile (CURVE_FLOOR)
    if floor < CURVE_FLOOR:
        quantiles = np.r_[np.linspace(floor, CURVE_FLOOR, 6)[:-1], quantiles]
    return sorted({round(float(np.clip(q, 0.01, top)), digits) for q in np.quantile(scores, quantiles)})


def float_thresholds(scenes: list[tuple[StreamScores, list[dict[str, Any]]]]) -> list[float]:
    """`curve_thresholds` for float scores (a float twin, a teacher): up to FLOAT_TOP, to
    FLOAT_DIGITS decimals, where the int8 grid stops at 0.995."""
    return curve_thresholds(scenes, top=FLOAT_TOP, digits=FLOAT_DIGITS)


def scene_curve(
    scenes: list[tuple[StreamScores, list[dict[str, Any]]]], decisions: DecisionParams, thresholds: list[float]
) -> dict[str, Any]:
    """Each threshold's outcome on the scenes, the rest of the rule as `decisions` (off keeps its
    ratio to on): false alarms, hours and which inserted screams were detected (one 0/1 per scream,
    scene after scene, beside each scream's source) so folds can be pooled and resampled exactly, and
    each found scream's onset to alarm (None where missed)."""
    rows = []
    for on in thresholds:
        params = decisions.with_threshold(on)
        hits: list[int] = []
        onsets: list[float | None] = []
        false_alarms = 0
        for scored, truth in scenes:
            starts, spans, _ = decide(scored, params)
            m = match_events(starts, spans, truth)
            hits += [int(i in m.detected) for i in range(len(truth))]
            onsets += [rounded_onset(m.detected.get(i)) for i in range(len(truth))]
            false_alarms += m.false_alarms
        rows.append({"on": on, "false_alarms": false_alarms, "hits": hits, "onset_s": onsets})
    return curve_of(scenes, decisions, rows)


def rounded_onset(seconds: float | None) -> float | None:
    """An onset to alarm as curves store it (ms), None for a missed scream."""
    return None if seconds is None else round(seconds, 3)


def curve_of(
    scenes: list[tuple[StreamScores, list[dict[str, Any]]]], decisions: DecisionParams, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """A curve as scene_curve writes it: its rows beside what pools and resamples them (hours, and
    each inserted scream's source and teacher audit, scene after scene)."""
    return {
        "decisions": decisions.describe(),
        "hours": round(sum(scored.seconds for scored, _ in scenes) / 3600, 4),
        "sources": [t.get("source", "") for _, truth in scenes for t in truth],
        "teacher_scream": [t.get("teacher_scream") for _, truth in scenes for t in truth],
        "rows": rows,
    }


def audited_curves(curves: list[dict[str, Any]], at: float) -> list[dict[str, Any]] | None:
    """The curves with only the inserted screams whose teacher audit (the manifest's teacher_scream)
    reaches `at`: the others stay in the scenes, and an alarm on one is neither a hit nor a false
    alarm, so each row keeps its false alarms and drops those screams' hits. None if a curve predates
    the audit column or a scream has no audit."""
    out = []
    for curve in curves:
        audit = curve.get("teacher_scream")
        if audit is None or any(a is None for a in audit):
            return None
        keep = [i for i, a in enumerate(audit) if a >= at]
        out.append(
            curve
            | {
                "sources": [curve["sources"][i] for i in keep],
                "teacher_scream": [audit[i] for i in keep],
                "rows": [
                    row | {key: [row[key][i] for i in keep] for key in ("hits", "onset_s") if key in row}
                    for row in curve["rows"]
                ],
            }
        )
    return out


def _source_interval(per_scream: npt.NDArray[np.int64], sources: npt.NDArray[np.str_], seed: int) -> list[float] | None:
    """95% percentile interval of the mean of a per-scream value (a hit, or the difference of two
    recipes' hits), resampling whole scream sources (1000 resamples); None with a single source."""
    names, index = np.unique(sources, return_inverse=True)
    if names.size < 2:
        return None
    summed = np.bincount(index, weights=per_scream, minlength=names.size)
    total = np.bincount(index, minlength=names.size)
    draws = np.random.default_rng(seed).integers(0, names.size, size=(1000, names.size))
    values = summed[draws].sum(axis=1) / np.maximum(total[draws].sum(axis=1), 1)
    low, high = np.quantile(values, [0.025, 0.975])
    return [round(float(low), 4), round(float(high), 4)]


def within_budget(curve: dict[str, Any], budget: float) -> dict[str, Any] | None:
    """The curve row with the most screams detected at or under `budget` false alarms per hour."""
    within = [r for r in curve["rows"] if r["false_alarms"] <= budget * curve["hours"]]
    return max(within, key=lambda r: (sum(r["hits"]), -r["false_alarms"]), default=None)


def _hits_within(curves: list[dict[str, Any]], budget: float) -> tuple[npt.NDArray[np.int64], int]:
    """Each inserted scream's 0/1 over the folds at their rows within `budget`, and their alarms."""
    hits: list[int] = []
    alarms = 0
    for c in curves:
        best = within_budget(c, budget)
        hits += best["hits"] if best else [0] * len(c["sources"])
        alarms += best["false_alarms"] if best else 0
    return np.array(hits, dtype=np.int64), alarms


def _median_onset_within(curves: list[dict[str, Any]], budget: float) -> float | None:
    """The median onset to alarm of the screams found at the folds' rows within `budget` (the rows
    the recall at that budget counts): onsets compared at one false-alarm rate, where each fold
    model's own `on` puts recipes at different ones. None if a curve predates onsets, or none found."""
    onsets: list[float] = []
    for c in curves:
        best = within_budget(c, budget)
        if best is None:
            continue
        if "onset_s" not in best:
            return None
        onsets += [o for o in best["onset_s"] if o is not None]
    return round(float(np.median(onsets)), 3) if onsets else None


def _alarms_at_recall(curves: list[dict[str, Any]]) -> int | None:
    """The folds' false alarms at their rows with the fewest alarms reaching RECALL_TARGET."""
    alarms = 0
    for c in curves:
        enough = [r["false_alarms"] for r in c["rows"] if sum(r["hits"]) >= RECALL_TARGET * len(c["sources"])]
        if not enough:
            return None
        alarms += min(enough)
    return alarms


def curve_headline(curves: list[dict[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    """The headline over one or more folds' curves, each fold at its own threshold: event recall
    at <= each FALSE_ALARM_BUDGETS (the threshold with the most recall within the budget on that
    fold's scenes; none within it counts as nothing detected), with a 95% interval resampling scream
    sources; and false alarms per hour at RECALL_TARGET (the threshold with the fewest false alarms
    reaching it; None if a fold never reaches it), with an exact Poisson interval. Thresholds are
    picked on the scenes they are measured on: this is the curve a recipe's scores allow, not an
    operating point."""
    from train import metrics

    hours = sum(c["hours"] for c in curves)
    sources = np.array([s for c in curves for s in c["sources"]], dtype=str)
    out: dict[str, Any] = {"folds": len(curves), "hours": round(hours, 3), "screams": int(sources.size)}
    for budget in FALSE_ALARM_BUDGETS:
        found, alarms = _hits_within(curves, budget)
        key = f"recall_at_{budget:g}_fa_per_hour"
        out[key] = round(float(found.mean()), 4) if found.size else None
        out[f"{key}_interval_95"] = _source_interval(found, sources, seed) if found.size else None
        out[f"{key}_false_alarms_per_hour"] = round(alarms / max(hours, 1e-9), 3)
        out[f"median_onset_at_{budget:g}_fa_per_hour_s"] = _median_onset_within(curves, budget)
    key = f"fa_per_hour_at_recall_{RECALL_TARGET:g}"
    alarms_at = _alarms_at_recall(curves) if curves else None
    out[key], out[f"{key}_interval_95"] = None, None
    if alarms_at is not None:
        low, high = metrics.poisson_rate_interval(alarms_at, hours)
        out[key], out[f"{key}_interval_95"] = round(alarms_at / hours, 3), [round(low, 3), round(high, 3)]
    return out


def paired_headline(
    curves: list[dict[str, Any]], baseline_curves: list[dict[str, Any]], *, seed: int = 0
) -> dict[str, Any]:
    """The headline of a recipe and of a baseline on the same scenes (the same inserted screams, fold
    by fold), and each budget's recall difference (recipe minus baseline) with a paired 95% interval
    resampling scream sources: both recipes meet the same resamples."""
    _same_screams(curves, baseline_curves)
    sources = np.array([s for c in curves for s in c["sources"]], dtype=str)
    out: dict[str, Any] = {
        "model": curve_headline(curves, seed=seed),
        "baseline": curve_headline(baseline_curves, seed=seed),
    }
    for budget in FALSE_ALARM_BUDGETS:
        a, _ = _hits_within(curves, budget)
        b, _ = _hits_within(baseline_curves, budget)
        key = f"recall_at_{budget:g}_fa_per_hour"
        row: dict[str, Any] = {"difference": round(float(a.mean() - b.mean()), 4) if a.size else None}
        interval = _source_interval(a - b, sources, seed) if a.size else None
        if interval is not None:
            row["interval_95"] = interval
        out[key] = row
    return out


def _same_screams(curves: list[dict[str, Any]], baseline_curves: list[dict[str, Any]]) -> None:
    if [c["sources"] for c in curves] != [c["sources"] for c in baseline_curves]:
        raise ValueError("the baseline's scenes hold other screams: not the same folds and scenes")


# The corpus audit's line under which a named scream is one the teacher hears as something else
# (train/corpus/recipe.toml `non_scream_below`; scream-v6's recipe trains without those screams).
AUDITED_AT = 0.05


def audited_headline(
    curves: list[dict[str, Any]], baseline_curves: list[dict[str, Any]] | None = None, *, seed: int = 0
) -> dict[str, Any] | None:
    """The headline (paired with the baseline's, if given) over only the inserted screams whose
    teacher audit reaches AUDITED_AT: many game death cries named screams are heard by the teacher
    as speech, groans or burps. The teacher chose these screams, so a teacher row is flattered by the
    cut; a recipe's is not. None when the scenes carry no audit (data without teacher_scream)."""
    kept = audited_curves(curves, AUDITED_AT)
    if kept is None:
        return None
    out: dict[str, Any] = {"at": AUDITED_AT, "of": sum(len(c["sources"]) for c in curves)}
    if baseline_curves is None:
        return out | curve_headline(kept, seed=seed)
    _same_screams(curves, baseline_curves)
    # The model's audit for both: the same screams, in the same order (checked just above).
    base = [b | {"teacher_scream": c["teacher_scream"]} for b, c in zip(baseline_curves, curves, strict=True)]
    base_kept = audited_curves(base, AUDITED_AT)
    assert base_kept is not None
    return out | paired_headline(kept, base_kept, seed=seed)
