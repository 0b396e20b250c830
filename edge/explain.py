"""`scream explain`: one picture of why the detector fired or did not on a recording.

Spectrogram, the score of every window, the on and off thresholds (as schedules change them),
schedule windows and the events as shaded spans. Needs matplotlib (the `plot` extra).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.audio import open_audio
from edge.classifier import Classifier
from edge.config import Config, ScheduleConfig
from edge.detector import DecisionParams, EventDetector, EventEnded
from edge.errors import ExtraMissingError
from edge.features import LogMelExtractor
from edge.pipeline import StreamingScorer, WindowScore
from edge.resample import StreamingResampler


@dataclass
class Timeline:
    scores: list[WindowScore]
    on: list[float]
    off: list[float]
    schedules: list[str]
    decision_scores: list[float] = field(default_factory=list)  # what the thresholds met (smoothed, if set)
    events: list[tuple[float, float, float]] = field(default_factory=list)  # start, end, peak
    logmel: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    duration_s: float = 0.0


def _active(schedules: list[ScheduleConfig], moment: dt.datetime) -> ScheduleConfig | None:
    return next((s for s in schedules if s.is_active(moment)), None)


def build_timeline(
    path: str | os.PathLike[str],
    classifier: Classifier,
    decisions: DecisionParams,
    config: Config,
    start_time: dt.datetime | None = None,
) -> Timeline:
    """Replay a file through the pipeline and the decisions, with the schedule at each window."""
    side = classifier.sidecar
    audio = open_audio(path)
    scorer = StreamingScorer(classifier, side.features, hop_frames=side.hop_frames, source_rate_hz=audio.sample_rate_hz)
    resampler = StreamingResampler(audio.sample_rate_hz, side.features.sample_rate_hz)
    samples: list[npt.NDArray[np.float32]] = []
    scores: list[WindowScore] = []
    for block in audio.blocks():
        scores += scorer.push(block)
        samples.append(resampler.push(block))
    scores += scorer.flush()
    samples.append(resampler.flush())
    detector = EventDetector(decisions)
    timeline = Timeline(scores=scores, on=[], off=[], schedules=[], duration_s=audio.duration_s)
    for s in scores:
        schedule = _active(config.schedule, start_time + dt.timedelta(seconds=s.end_s)) if start_time else None
        params = decisions.with_threshold(schedule.on_threshold) if schedule and schedule.on_threshold else decisions
        detector.retune(params)
        timeline.on.append(params.on_threshold)
        timeline.off.append(params.off_threshold)
        timeline.schedules.append(schedule.name if schedule else "")
        transitions = detector.update(s.score, s.start_s, s.end_s)
        timeline.decision_scores.append(detector.decision_score)
        for t in transitions:
            if isinstance(t, EventEnded):
                timeline.events.append((t.event.start_s, t.event.end_s or s.end_s, t.event.peak_score))
    for t in detector.finish(audio.duration_s):
        if isinstance(t, EventEnded):
            timeline.events.append((t.event.start_s, t.event.end_s or audio.duration_s, t.event.peak_score))
    timeline.logmel = LogMelExtractor(side.features).compute(np.concatenate(samples))
    return timeline


def render(timeline: Timeline, out: Path, *, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ExtraMissingError("matplotlib", "plot", "scream explain") from exc
    fig, (ax_spec, ax_score) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [1.2, 1]})
    frames = timeline.logmel
    hop_s = timeline.duration_s / max(frames.shape[0], 1)
    ax_spec.imshow(
        frames.T, origin="lower", aspect="auto", cmap="magma", extent=(0, frames.shape[0] * hop_s, 0, frames.shape[1])
    )
    ax_spec.set_ylabel("mel band")
    ends = np.array([s.end_s for s in timeline.scores])
    ax_score.plot(ends, [s.score for s in timeline.scores], color="tab:blue", marker=".", lw=1, label="score")
    if timeline.decision_scores != [s.score for s in timeline.scores]:
        ax_score.plot(ends, timeline.decision_scores, color="tab:purple", lw=1.5, label="smoothed (meets thresholds)")
    ax_score.step(ends, timeline.on, where="post", color="tab:red", lw=1.2, label="on threshold")
    ax_score.step(ends, timeline.off, where="post", color="tab:orange", lw=1, ls="--", label="off threshold")
    for start, end, peak in timeline.events:
        for ax in (ax_spec, ax_score):
            ax.axvspan(start, end, color="tab:red", alpha=0.18)
        ax_score.annotate(f"event {peak:.2f}", (start, 1.02), fontsize=8, color="tab:red")
    current, since = "", 0.0
    for name, end in [*zip(timeline.schedules, ends, strict=True), ("", float("inf"))]:
        if name != current:
            if current:
                ax_score.axvspan(
                    since, min(end, timeline.duration_s), ymin=0.0, ymax=0.04, color="tab:green", alpha=0.6
                )
                ax_score.annotate(f"schedule {current}", (since, 0.05), fontsize=8, color="tab:green")
            current, since = name, end
    ax_score.set(ylim=(0, 1.1), xlabel="time (s; each score at its window's end)", ylabel="scream score")
    ax_score.legend(loc="upper right", fontsize=8)
    ax_spec.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def explain(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    classifier: Classifier,
    decisions: DecisionParams,
    config: Config,
    start_time: dt.datetime | None = None,
) -> dict[str, Any]:
    timeline = build_timeline(path, classifier, decisions, config, start_time)
    verdict = f"{len(timeline.events)} event(s)" if timeline.events else "no event"
    title = (
        f"{Path(path).name}: {verdict}; model {classifier.model_path.name} "
        f"({classifier.sha256[:12]}), peak score {max((s.score for s in timeline.scores), default=0):.2f}"
    )
    render(timeline, Path(out), title=title)
    return {
        "path": str(path),
        "out": str(out),
        "events": [
            {"start_s": round(a, 3), "end_s": round(b, 3), "peak_score": round(p, 4)} for a, b, p in timeline.events
        ],
        "windows": len(timeline.scores),
        "decisions": {
            "on": round(decisions.on_threshold, 4),
            "off": round(decisions.off_threshold, 4),
            "patience_windows": decisions.patience_windows,
            "patience_of": decisions.patience_of,
            "smoothing_windows": decisions.smoothing_windows,
        },
    }
