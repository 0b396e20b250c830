"""The one streaming path from samples to window scores to events, for live and replay alike.

source rate samples -> resampler -> incremental log-mel -> window every hop -> classifier -> score
-> decisions. `detect` replays files through it as fast as it can; `listen` feeds it live audio.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge.audio import open_audio
from edge.detector import DecisionParams, Event, EventDetector, EventEnded, Transition
from edge.features import FeatureParams, StreamingLogMel, full_scale_reference, window_level_dbfs
from edge.resample import StreamingResampler


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


@dataclass
class StreamResult:
    scores: list[WindowScore] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)


class DetectionPipeline:
    """Scorer plus decisions: `push` audio, get window scores and event transitions."""

    def __init__(
        self,
        classifier: WindowScorer,
        features: FeatureParams,
        decisions: DecisionParams,
        *,
        hop_frames: int,
        source_rate_hz: int,
    ) -> None:
        self.scorer = StreamingScorer(classifier, features, hop_frames=hop_frames, source_rate_hz=source_rate_hz)
        self.detector = EventDetector(decisions)

    def _decide(self, scores: list[WindowScore]) -> StreamResult:
        result = StreamResult(scores=scores)
        for s in scores:
            result.transitions += self.detector.update(s.score, s.start_s, s.end_s)
        return result

    def push(self, chunk: npt.ArrayLike) -> StreamResult:
        return self._decide(self.scorer.push(chunk))

    def flush(self) -> StreamResult:
        result = self._decide(self.scorer.flush())
        end_s = self.scorer.samples_in / self.scorer.features.sample_rate_hz
        result.transitions += self.detector.finish(end_s)
        return result

    def run(self, chunks: Iterable[npt.ArrayLike]) -> StreamResult:
        """Push every chunk, then flush: all scores and transitions of a finite stream, in order."""
        total = StreamResult()
        for result in [*(self.push(chunk) for chunk in chunks), self.flush()]:
            total.scores += result.scores
            total.transitions += result.transitions
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
    scores: list[WindowScore]
    events: list[Event]
    warnings: list[str]

    @property
    def peak_score(self) -> float:
        return max((s.score for s in self.scores), default=0.0)

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
            "windows": len(self.scores),
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
    classifier: WindowScorer,
    features: FeatureParams,
    decisions: DecisionParams,
    *,
    hop_frames: int,
    block_frames: int = 65536,
) -> FileReport:
    """Replay one file through the streaming pipeline as fast as possible."""
    audio = open_audio(path)
    pipeline = DetectionPipeline(
        classifier, features, decisions, hop_frames=hop_frames, source_rate_hz=audio.sample_rate_hz
    )
    result = pipeline.run(audio.blocks(block_frames))
    events = [t.event for t in result.transitions if isinstance(t, EventEnded)]
    return FileReport(
        Path(path),
        audio.duration_s,
        audio.sample_rate_hz,
        audio.channels,
        audio.format_name,
        result.scores,
        events,
        list(audio.warnings),
    )
