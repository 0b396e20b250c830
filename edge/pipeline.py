"""The one streaming path from samples to window scores to events, for live and replay alike.

source rate samples -> resampler -> incremental log-mel -> window every hop -> classifier -> score
(+ loudness) -> edge.detector's decisions. `detect` replays files through it as fast as it can,
`listen` feeds it live audio, `explain`, `demo` and `bench` replay synthesised or recorded audio.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from edge.audio import open_audio
from edge.config import Config, DetectorConfig, ScheduleConfig
from edge.detector import Decision, DecisionParams, Detector, Event, EventEnded, Transition
from edge.features import FeatureParams, StreamingLogMel, full_scale_reference, window_level_dbfs
from edge.resample import StreamingResampler

if TYPE_CHECKING:
    from edge.classifier import Classifier, ModelSidecar


class WindowScorer(Protocol):
    """What the pipeline needs from a classifier (the TFLite one, or a test double)."""

    @property
    def input_shape(self) -> tuple[int, int]: ...

    def score(self, window: npt.NDArray[np.float32]) -> float: ...


@dataclass(frozen=True)
class WindowScore:
    index: int
    start_s: float
    end_s: float
    score: float
    level_dbfs: float = 0.0


class StreamingScorer:
    """Turns audio chunks at `source_rate_hz` into one score per window hop."""

    def __init__(
        self,
        classifier: WindowScorer,
        features: FeatureParams,
        *,
        hop_frames: int,
        source_rate_hz: int,
    ) -> None:
        self.classifier = classifier
        self.features = features
        self.window_frames, mel_bands = classifier.input_shape
        if mel_bands != features.mel_bands:
            raise ValueError(f"classifier takes {mel_bands} mel bands, features give {features.mel_bands}")
        self.hop_frames = hop_frames
        self._resampler = StreamingResampler(source_rate_hz, features.sample_rate_hz)
        self._logmel = StreamingLogMel(features)
        self._frames = np.zeros((0, mel_bands), dtype=np.float32)
        self._frames_start = 0  # absolute index of self._frames[0]
        self._next_window = 0
        self.samples_in = 0  # at the model rate
        self._frame_hop_s = features.hop_samples / features.sample_rate_hz
        self._frame_len_s = features.window_samples / features.sample_rate_hz
        self._level_reference = full_scale_reference(features)

    def window_bounds(self, index: int) -> tuple[float, float]:
        first = index * self.hop_frames
        last = first + self.window_frames - 1
        return first * self._frame_hop_s, last * self._frame_hop_s + self._frame_len_s

    def push(self, chunk: npt.ArrayLike) -> list[WindowScore]:
        return self._consume(self._resampler.push(chunk))

    def flush(self) -> list[WindowScore]:
        """End of stream: score the tail, padding with silence so every sample lands in a window."""
        scores = self._consume(self._resampler.flush())
        if self.samples_in == 0:
            return scores
        p = self.features
        _, covered_until = self.window_bounds(self._next_window - 1) if self._next_window else (0.0, 0.0)
        audio_end_s = self.samples_in / p.sample_rate_hz
        if covered_until < audio_end_s:
            _, next_end_s = self.window_bounds(self._next_window)
            missing = int(np.ceil(next_end_s * p.sample_rate_hz)) - self.samples_in
            scores += self._consume(np.zeros(max(missing, 0), dtype=np.float32), is_padding=True)
        return scores

    def _consume(self, samples: npt.NDArray[np.float32], *, is_padding: bool = False) -> list[WindowScore]:
        if not is_padding:
            self.samples_in += samples.size
        new_frames = self._logmel.push(samples)
        if new_frames.shape[0]:
            self._frames = np.concatenate([self._frames, new_frames])
        out = []
        while True:
            first = self._next_window * self.hop_frames - self._frames_start
            if first + self.window_frames > self._frames.shape[0]:
                break
            window = self._frames[first : first + self.window_frames]
            start_s, end_s = self.window_bounds(self._next_window)
            level = window_level_dbfs(window, self.features, self._level_reference)
            out.append(WindowScore(self._next_window, start_s, end_s, self.classifier.score(window), level))
            self._next_window += 1
        drop = self._next_window * self.hop_frames - self._frames_start
        if drop > 0:
            self._frames = self._frames[drop:]
            self._frames_start += drop
        return out


Clock = Callable[[float], dt.datetime | None]  # stream time (s) -> wall-clock moment, for schedules


def no_clock(stream_s: float) -> dt.datetime | None:
    """Recordings with no place in time: no schedule applies."""
    return None


def decide_windows(detector: Detector, windows: Iterable[WindowScore], clock: Clock = no_clock) -> list[Decision]:
    """Windows already scored, through the decisions, in order: the one place scores meet `Detector`."""
    return [
        detector.update(w.score, w.start_s, w.end_s, level_dbfs=w.level_dbfs, moment=clock(w.end_s)) for w in windows
    ]


def detection_settings(
    side: ModelSidecar, site: DetectorConfig | None = None, *, threshold: float | None = None
) -> tuple[DecisionParams, int]:
    """The decisions and window hop (feature frames) a site runs a model with: `[detector]` over the
    model's operating point (defaults: the model's own and the default gate), `threshold` last."""
    site = site or DetectorConfig()
    hop = side.hop_frames_for(site.hop_ms) if site.hop_ms else side.hop_frames
    params = site.decisions(side.operating_point, side.hop_frames, hop)
    return (params.with_threshold(threshold) if threshold is not None else params), hop


@dataclass
class StreamResult:
    windows: list[Decision] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)

    @property
    def events(self) -> list[Event]:
        """The events that ended, in order."""
        return [t.event for t in self.transitions if isinstance(t, EventEnded)]

    def extend(self, other: StreamResult) -> None:
        self.windows += other.windows
        self.transitions += other.transitions


class DetectionPipeline:
    """The one composition of a scorer and the decisions: `push` audio, get each window's decision
    and the event transitions. Stream time runs on across `restart` (a reopened device)."""

    def __init__(
        self,
        classifier: WindowScorer,
        features: FeatureParams,
        decisions: DecisionParams,
        *,
        hop_frames: int,
        source_rate_hz: int,
        schedules: Sequence[ScheduleConfig] = (),
        clock: Clock = no_clock,
    ) -> None:
        self.features = features
        self.hop_frames = hop_frames
        self.detector = Detector(decisions, schedules)
        self.clock = clock
        self.offset_s = 0.0  # stream time before the current audio session
        self.scorer = StreamingScorer(classifier, features, hop_frames=hop_frames, source_rate_hz=source_rate_hz)

    @classmethod
    def for_model(
        cls,
        classifier: Classifier,
        config: Config | None = None,
        *,
        source_rate_hz: int,
        threshold: float | None = None,
        clock: Clock = no_clock,
    ) -> DetectionPipeline:
        """The pipeline a site runs: the model's features and operating point under the config's
        `[detector]` and `[[schedule]]` (defaults without a config), optionally another `on`."""
        config = config or Config()
        side = classifier.sidecar
        decisions, hop = detection_settings(side, config.detector, threshold=threshold)
        return cls(
            classifier,
            side.features,
            decisions,
            hop_frames=hop,
            source_rate_hz=source_rate_hz,
            schedules=config.schedule,
            clock=clock,
        )

    @property
    def stream_s(self) -> float:
        """Audio pushed so far, in seconds of stream time."""
        return self.offset_s + self.scorer.samples_in / self.features.sample_rate_hz

    def restart(self, source_rate_hz: int) -> None:
        """A new audio session (a reopened device, maybe at another rate): a fresh scorer, while
        stream time and the decisions (an open event, the cooldown, the noise floor) carry on."""
        self.offset_s = self.stream_s
        self.scorer = StreamingScorer(
            self.scorer.classifier, self.features, hop_frames=self.hop_frames, source_rate_hz=source_rate_hz
        )

    def use_model(self, classifier: WindowScorer, decisions: DecisionParams) -> None:
        """A reloaded model of the same input shape, with its own operating point."""
        self.scorer.classifier = classifier
        self.detector.retune(decisions)

    def _decide(self, scores: list[WindowScore]) -> StreamResult:
        offset = self.offset_s
        shifted = [replace(s, start_s=s.start_s + offset, end_s=s.end_s + offset) for s in scores] if offset else scores
        windows = decide_windows(self.detector, shifted, self.clock)
        return StreamResult(windows, [t for w in windows for t in w.transitions])

    def push(self, chunk: npt.ArrayLike) -> StreamResult:
        return self._decide(self.scorer.push(chunk))

    def finish(self) -> StreamResult:
        """Close an open event now (end of stream or shutdown)."""
        return StreamResult([], self.detector.finish(self.stream_s))

    def flush(self) -> StreamResult:
        """End of stream: score the tail, then close an open event."""
        result = self._decide(self.scorer.flush())
        result.extend(self.finish())
        return result

    def run(self, chunks: Iterable[npt.ArrayLike]) -> StreamResult:
        """Push every chunk, then flush: all decisions and transitions of a finite stream, in order."""
        total = StreamResult()
        for chunk in chunks:
            total.extend(self.push(chunk))
        total.extend(self.flush())
        return total


def chunked(audio: npt.NDArray[np.float32], chunk_samples: int) -> Iterator[npt.NDArray[np.float32]]:
    """Audio in consecutive pieces, as a microphone delivers it."""
    for start in range(0, audio.size, chunk_samples):
        yield audio[start : start + chunk_samples]


@dataclass
class FileReport:
    path: Path
    duration_s: float
    sample_rate_hz: int
    channels: int
    format_name: str
    windows: list[Decision]
    events: list[Event]
    warnings: list[str]

    @property
    def peak_score(self) -> float:
        return max((w.score for w in self.windows), default=0.0)

    @property
    def is_scream(self) -> bool:
        return bool(self.events)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "status": "ok",
            "verdict": "scream" if self.is_scream else "no_scream",
            "peak_score": round(self.peak_score, 4),
            "duration_s": round(self.duration_s, 3),
            "sample_rate_hz": self.sample_rate_hz,
            "channels": self.channels,
            "format": self.format_name,
            "windows": len(self.windows),
            "segments": [
                {
                    "start_s": round(e.start_s, 3),
                    "end_s": round(e.end_s or 0.0, 3),
                    "peak_score": round(e.peak_score, 4),
                }
                for e in self.events
            ],
            "warnings": self.warnings,
        }


def analyse_file(
    path: str | os.PathLike[str],
    classifier: Classifier,
    config: Config | None = None,
    *,
    threshold: float | None = None,
    block_frames: int = 65536,
) -> FileReport:
    """Replay one file through the pipeline a site runs (`config`'s `[detector]`, gate included) as
    fast as possible. Schedules need a wall-clock time, which a file has not: they do not apply."""
    audio = open_audio(path)
    pipeline = DetectionPipeline.for_model(classifier, config, source_rate_hz=audio.sample_rate_hz, threshold=threshold)
    result = pipeline.run(audio.blocks(block_frames))
    return FileReport(
        Path(path),
        audio.duration_s,
        audio.sample_rate_hz,
        audio.channels,
        audio.format_name,
        result.windows,
        result.events,
        list(audio.warnings),
    )
