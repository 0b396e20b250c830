"""`scream explain`: one picture of why the detector fired or did not on a recording.

Spectrogram, the score of every window and the score that met the thresholds (smoothed; 0 where the
loudness gate held a window back), the on and off thresholds (as schedules change them), schedule
windows and the events as shaded spans, all from the pipeline `listen` runs. Needs matplotlib (the `plot` extra).
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
from edge.config import Config
from edge.detector import Decision, DecisionParams, Event
from edge.errors import ExtraMissingError
from edge.features import LogMelExtractor
from edge.pipeline import DetectionPipeline, StreamResult, no_clock
from edge.resample import StreamingResampler


@dataclass
class Timeline:
    windows: list[Decision]  # each window's score, the score the thresholds met, thresholds and schedule
    events: list[Event]
    decisions: DecisionParams  # the rule outside any schedule
    logmel: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    duration_s: float = 0.0


def build_timeline(
    path: str | os.PathLike[str],
    classifier: Classifier,
    config: Config | None = None,
    start_time: dt.datetime | None = None,
    *,
    threshold: float | None = None,
) -> Timeline:
    """Replay a file through the pipeline `listen` runs with this config (gate and schedules
    included; schedules need `start_time`, the recording's wall-clock start)."""
    side = classifier.sidecar
    audio = open_audio(path)
    clock = (lambda s: start_time + dt.timedelta(seconds=s)) if start_time else no_clock
    pipeline = DetectionPipeline.for_model(
        classifier, config, source_rate_hz=audio.sample_rate_hz, threshold=threshold, clock=clock
    )
    resampler = StreamingResampler(audio.sample_rate_hz, side.features.sample_rate_hz)
    samples: list[npt.NDArray[np.float32]] = []
    result = StreamResult()
    for block in audio.blocks():
        result.extend(pipeline.push(block))
        samples.append(resampler.push(block))
    result.extend(pipeline.flush())
    samples.append(resampler.flush())
    return Timeline(
        windows=result.windows,
        events=result.events,
        decisions=pipeline.detector.base_params,
        logmel=LogMelExtractor(side.features).compute(np.concatenate(samples)),
        duration_s=audio.duration_s,
    )


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
    windows = timeline.windows
    ends = np.array([w.end_s for w in windows])
    scores = [w.score for w in windows]
    ax_score.plot(ends, scores, color="tab:blue", marker=".", lw=1, label="score")
    decision_scores = [w.decision_score for w in windows]
    if decision_scores != scores:
        ax_score.plot(ends, decision_scores, color="tab:purple", lw=1.5, label="met the thresholds (smoothed, gated)")
    ax_score.step(ends, [w.on_threshold for w in windows], where="post", color="tab:red", lw=1.2, label="on threshold")
    ax_score.step(
        ends, [w.off_threshold for w in windows], where="post", color="tab:orange", lw=1, ls="--", label="off threshold"
    )
    for event in timeline.events:
        for ax in (ax_spec, ax_score):
            ax.axvspan(event.start_s, event.end_s or event.start_s, color="tab:red", alpha=0.18)
        ax_score.annotate(f"event {event.peak_score:.2f}", (event.start_s, 1.02), fontsize=8, color="tab:red")
    current, since = "", 0.0
    for name, end in [*((w.schedule, w.end_s) for w in windows), ("", float("inf"))]:
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
    config: Config | None = None,
    start_time: dt.datetime | None = None,
    *,
    threshold: float | None = None,
) -> dict[str, Any]:
    timeline = build_timeline(path, classifier, config, start_time, threshold=threshold)
    verdict = f"{len(timeline.events)} event(s)" if timeline.events else "no event"
    title = (
        f"{Path(path).name}: {verdict}; model {classifier.model_path.name} "
        f"({classifier.sha256[:12]}), peak score {max((w.score for w in timeline.windows), default=0):.2f}"
    )
    render(timeline, Path(out), title=title)
    d = timeline.decisions
    return {
        "path": str(path),
        "out": str(out),
        "events": [
            {
                "start_s": round(e.start_s, 3),
                "end_s": round(e.end_s or e.start_s, 3),
                "peak_score": round(e.peak_score, 4),
            }
            for e in timeline.events
        ],
        "windows": len(timeline.windows),
        "gated_windows": sum(w.gated for w in timeline.windows),
        "decisions": {
            "on": round(d.on_threshold, 4),
            "off": round(d.off_threshold, 4),
            "patience_windows": d.patience_windows,
            "patience_of": d.patience_of,
            "smoothing_windows": d.smoothing_windows,
            "loudness_gate_dbfs": d.loudness_gate_dbfs,
            "noise_floor_margin_db": d.noise_floor_margin_db,
        },
    }
