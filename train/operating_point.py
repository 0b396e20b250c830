"""Choose the live detector's operating point (`on` threshold and k-of-n patience) on validation.

Window-level thresholds say little about what a site sees: an alarm is an event, decided from a
run of windows. So the exported int8 model scores the validation split the way `evaluate` scores
the test split (its non-screams back to back, with its screams inserted at 0-20 dB), in a few
scenes of different order and SNRs, through the edge's streaming path, once each; then every
candidate (`on`, k, n) replays those scores through the live detector's own decisions, pooled
over the scenes. The rule, recorded in the sidecar:

only candidates that detect at least `min_event_recall` of the inserted screams with a median
onset-to-alarm of at most `max_latency_s` are eligible; among them,
1. the most event recall at or under `max_false_alarms_per_hour`, if any reaches it;
2. otherwise the fewest false alarms per hour (a false alarm costs a site more than a scream
   caught a little later or at a lower level: every alarm sends someone to look);
3. and if none is eligible, the plain threshold (the window threshold at `default_fpr`, 1 of 1).
Ties go to more recall, then less latency, then less patience.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.classifier import Classifier
from edge.detector import DecisionParams
from train import metrics
from train.data import Clip
from train.scenes import decide, pooled_scene_metrics, score_stream, stream_and_scene

FloatArray = npt.NDArray[np.float32]
PATIENCE_GRID = ((1, 1), (2, 2), (2, 3), (3, 3))


@dataclass(frozen=True, kw_only=True)
class OperatingPointRule:
    window_fprs: tuple[float, ...] = (0.0025, 0.005, 0.01, 0.02)  # candidate `on`s: validation window FPRs
    off_ratio_fpr: float = 0.03  # `off` sits at this window FPR (never above `on`)
    patience: tuple[tuple[int, int], ...] = PATIENCE_GRID
    max_false_alarms_per_hour: float = 0.5
    min_event_recall: float = 0.5
    max_latency_s: float = 1.0
    scenes: int = 4  # validation scenes pooled: a single 10-minute scene is too few alarms to choose by
    default_fpr: float = 0.01  # always among window_fprs


@dataclass(frozen=True)
class Candidate:
    window_fpr: float
    on: float
    off: float
    patience_windows: int
    patience_of: int
    event_recall: float
    false_alarms_per_hour: float
    latency_s: float | None

    def row(self) -> dict[str, Any]:
        return {
            "window_fpr": self.window_fpr,
            "on": self.on,
            "off": self.off,
            "patience": f"{self.patience_windows} of {self.patience_of}",
            "event_recall": self.event_recall,
            "false_alarms_per_hour": self.false_alarms_per_hour,
            "median_onset_to_alarm_s": self.latency_s,
        }


def on_off_at(labels: npt.ArrayLike, scores: npt.ArrayLike, on_fpr: float, off_fpr: float) -> tuple[float, float]:
    """The window thresholds at two false-positive rates, clipped to a usable range, `off` never above `on`."""
    on = round(float(np.clip(metrics.threshold_at_fpr(labels, scores, on_fpr), 0.05, 0.98)), 4)
    off = metrics.threshold_at_fpr(labels, scores, off_fpr)
    return on, round(float(np.clip(min(off, on), 0.02, on)), 4)


def candidate_thresholds(
    labels: npt.ArrayLike, scores: npt.ArrayLike, rule: OperatingPointRule
) -> list[tuple[float, float, float]]:
    """(window FPR, on, off) for each candidate FPR, clipped to a usable range and de-duplicated."""
    out: dict[float, tuple[float, float, float]] = {}
    for fpr in sorted({*rule.window_fprs, rule.default_fpr}):
        on, off = on_off_at(labels, scores, fpr, rule.off_ratio_fpr)
        if on not in out or fpr == rule.default_fpr:  # equal thresholds: one candidate, named for the default
            out[on] = (fpr, on, off)
    return list(out.values())


def sweep(
    classifier: Classifier,
    clips: list[Clip],
    waves: list[FloatArray],
    thresholds: list[tuple[float, float, float]],
    rule: OperatingPointRule,
    seed: int,
) -> tuple[list[Candidate], float]:
    """Every (threshold, patience) candidate's metrics, pooled over `rule.scenes` scenes (each its own
    order of the non-screams and its own SNRs); also returns the scenes' total length in hours."""
    scenes = []
    for k in range(rule.scenes):
        _, scene, truth, _ = stream_and_scene(clips, waves, classifier.sidecar.features, seed + k)
        scenes.append((score_stream(classifier, scene), truth))
    hours = sum(scored.seconds for scored, _ in scenes) / 3600
    out = []
    for fpr, on, off in thresholds:
        for k, n in rule.patience:
            params = DecisionParams(on_threshold=on, off_threshold=off, patience_windows=k, patience_of=n)
            m = pooled_scene_metrics([(*decide(scored, params)[:2], truth, scored.seconds) for scored, truth in scenes])
            latency = m["median_onset_to_alarm_s"]
            out.append(Candidate(fpr, on, off, k, n, m["event_recall"], m["false_alarms_per_hour"], latency))
    return out, hours


def choose(candidates: list[Candidate], rule: OperatingPointRule) -> tuple[Candidate, str]:
    """Apply the rule of this module's docstring; returns the choice and which clause chose it."""
    baseline = next((c for c in candidates if c.window_fpr == rule.default_fpr and c.patience_of == 1), candidates[0])
    eligible = [
        c
        for c in candidates
        if c.event_recall > 0
        and c.event_recall >= rule.min_event_recall
        and c.latency_s is not None
        and c.latency_s <= rule.max_latency_s
    ]

    def preference(c: Candidate) -> tuple[float, float, int]:
        return (-c.event_recall, c.latency_s if c.latency_s is not None else 1e9, c.patience_windows)

    floors = (
        f"scene event recall at least {rule.min_event_recall} and median onset-to-alarm at most {rule.max_latency_s} s"
    )
    quiet = [c for c in eligible if c.false_alarms_per_hour <= rule.max_false_alarms_per_hour]
    if quiet:
        return min(quiet, key=preference), (
            f"most scene event recall at or under {rule.max_false_alarms_per_hour} false alarms per hour, with {floors}"
        )
    if eligible:
        return min(eligible, key=lambda c: (c.false_alarms_per_hour, *preference(c))), (
            f"no candidate reached {rule.max_false_alarms_per_hour} false alarms per hour; fewest false alarms "
            f"with {floors}"
        )
    return baseline, f"no candidate kept {floors}; the plain window threshold, 1 of 1"


def choose_operating_point(
    classifier: Classifier,
    clips: list[Clip],
    waves: list[FloatArray],
    window_labels: npt.ArrayLike,
    window_scores: npt.ArrayLike,
    *,
    rule: OperatingPointRule | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The sidecar's `thresholds` block, with the validation sweep that chose it."""
    rule = rule or OperatingPointRule()
    thresholds = candidate_thresholds(window_labels, window_scores, rule)
    candidates, hours = sweep(classifier, clips, waves, thresholds, rule, seed)
    best, clause = choose(candidates, rule)
    return {
        "on": best.on,
        "off": best.off,
        "patience_windows": best.patience_windows,
        "patience_of": best.patience_of,
        "chosen_by": (
            f"{rule.scenes} validation scenes ({hours * 60:.1f} min in all, each with the split's "
            f"{sum(c.is_scream for c in clips)} screams inserted), "
            f"int8 model and live decisions: {clause}. 'on' is the validation window threshold at "
            f"{best.window_fpr:.2%} false positives, 'off' at {rule.off_ratio_fpr:.0%}"
        ),
        "validation": best.row(),
        "candidates": [c.row() for c in candidates],
    }
