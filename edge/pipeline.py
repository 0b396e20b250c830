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
from edge.detector import Decision, DecisionParams, Detector, Event, EventEnded, EventVetoed, Transition
from edge.errors import ModelError
from edge.features import FeatureParams, StreamingLogMel, full_scale_reference, window_level_dbfs
from edge.resample import StreamingResampler
from edge.verifier import VERIFIER_RATE_HZ, EventVerifier

MAX_VERIFY_WINDOWS = 8  # a candidate's verification scores at most its last 8 raising windows

if TYPE_CHECKING:
    from edge.classifier import Classifier, ModelSidecar, VerificationPair


class WindowScorer(Protocol):
    """What the pipeline needs from a classifier (the TFLite one, or a test double)."""

    @property
    def input_shape(self) -> tuple[int, int]: ...

    def score(self, window: npt.NDArray[np.float32]) -> float: ...


class WindowVerifier(Protocol):
    """What the pipeline needs from a second stage (edge.verifier's, or a test double)."""

    requested: tuple[float, int]  # the threshold and attempts asked for; 0: the model's pair's
    threshold: float  # in force behind the running model (verifier_plan)
    window_samples: int
    attempts: int  # verdicts per candidate at most (a vetoed one is judged again at fresh hits)

    def judge(self, windows: list[npt.NDArray[np.float32]]) -> float: ...

    def pair_in(self, side: ModelSidecar) -> VerificationPair | None: ...


@dataclass(frozen=True)
class VerifierPlan:
    """A second stage's settings behind one model: its threshold and verdicts per candidate, and the
    pair they came from (the model's sidecar), whose `on` and patience then stand in for the model's."""

    threshold: float
    attempts: int
    pair: VerificationPair | None

    def describe(self) -> str:
        source = f"the model's pair ({self.pair.chosen or 'recorded'})" if self.pair else "the config"
        verdicts = f", up to {self.attempts} verdicts a candidate" if self.attempts > 1 else ""
        return f"threshold {self.threshold:g}{verdicts}, from {source}"


def verifier_plan(verifier: WindowVerifier, side: ModelSidecar) -> VerifierPlan:
    """What `verifier` runs with behind the model of `side`. A requested threshold of 0 takes the
    pair that model recorded for this verifier's verdict (its threshold, its attempts unless some are
    requested, and through detection_settings its `on`); a model without that pair is refused
    (ModelError): the site asked for settings it does not have. A requested threshold is used as it
    is, with the requested attempts (1 for 0). Nothing is changed: DetectionPipeline applies it."""
    threshold, attempts = verifier.requested
    if threshold != 0:  # the site's own threshold: nothing of a pair applies
        return VerifierPlan(threshold, attempts or 1, None)
    pair = verifier.pair_in(side)
    if pair is None:
        recorded = "; ".join(f"{p.verdict} on verifier {p.verifier_sha256[:12]}" for p in side.verification)
        raise ModelError(
            f"model {side.name} ({side.sha256[:12]}) has no verification pair for this verifier "
            f"(its pairs: {recorded or 'none'}): record one with 'scream verification --record', or set "
            "[verifier] threshold and [detector] on_threshold"
        )
    return VerifierPlan(pair.threshold, attempts or pair.attempts, pair)


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
        history_s: float = 0.0,
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
        # The last `history_s` of audio at the model rate, for a second stage to hear what was scored.
        self.history_s = history_s
        self._history = np.zeros(0, dtype=np.float32)
        self._history_start = 0  # model-rate sample index of self._history[0]

    def audio(self, start: int, length: int) -> npt.NDArray[np.float32]:
        """`length` model-rate samples from sample `start` of this session; silence where none are kept."""
        out = np.zeros(length, dtype=np.float32)
        lo, hi = max(start, self._history_start), min(start + length, self._history_start + self._history.size)
        if hi > lo:
            out[lo - start : hi - start] = self._history[lo - self._history_start : hi - self._history_start]
        return out

    def _remember(self, samples: npt.NDArray[np.float32]) -> None:
        keep = int(self.history_s * self.features.sample_rate_hz) + samples.size  # a long chunk stays whole
        self._history = np.concatenate([self._history, samples])
        if self._history.size > 2 * keep:  # trim now and then, not on every chunk
            drop = self._history.size - keep
            self._history = self._history[drop:]
            self._history_start += drop

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
            if self.history_s > 0:
                self._remember(samples)
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


def raising_windows(
    start_s: float, detected_s: float, *, hop_s: float, window_s: float, limit: int = MAX_VERIFY_WINDOWS
) -> list[float]:
    """Where the windows that raised an event start: from the one at its first hit (`start_s`) to
    the last that ended by its detection, at most the last `limit` of them. The second stage hears
    these (live in DetectionPipeline, offline in train/verification.py)."""
    first = round(start_s / hop_s)
    last = max(first, int(np.floor((detected_s - window_s + 1e-6) / hop_s)))
    return [i * hop_s for i in range(max(first, last - limit + 1), last + 1)]


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
    side: ModelSidecar,
    site: DetectorConfig | None = None,
    *,
    threshold: float | None = None,
    pair: VerificationPair | None = None,
) -> tuple[DecisionParams, int]:
    """The decisions and window hop (feature frames) a site runs a model with: `[detector]` over the
    model's operating point (defaults: the model's own and the default gate), `threshold` last. With
    the verification `pair` in force, its `on` (and patience, if it was chosen with one) stand in for
    the model's own where `[detector]` keeps them."""
    site = site or DetectorConfig()
    if pair is not None:
        own_patience = site.patience_windows == 0 and pair.patience is not None
        site = replace(
            site,
            on_threshold=site.on_threshold or pair.on_threshold,
            patience_windows=pair.patience[0] if own_patience and pair.patience else site.patience_windows,
            patience_of=pair.patience[1] if own_patience and pair.patience else site.patience_of,
        )
    hop = side.hop_frames_for(site.hop_ms) if site.hop_ms else side.hop_frames
    params = site.decisions(side.operating_point, side.hop_frames, hop)
    return (params.with_threshold(threshold) if threshold is not None else params), hop


def site_settings(
    side: ModelSidecar,
    config: Config,
    verifier: WindowVerifier | None,
    *,
    threshold: float | None = None,
) -> tuple[DecisionParams, int, VerifierPlan | None]:
    """Everything a site runs a model with: the decisions, the window hop, and the second stage's
    plan (verifier_plan; its pair's `on` and patience in the decisions). A ModelError when the
    config asks for a pair the model has not recorded."""
    plan = verifier_plan(verifier, side) if verifier is not None else None
    decisions, hop = detection_settings(side, config.detector, threshold=threshold, pair=plan.pair if plan else None)
    return decisions, hop, plan


@dataclass
class StreamResult:
    windows: list[Decision] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)

    @property
    def events(self) -> list[Event]:
        """The events that ended, in order."""
        return [t.event for t in self.transitions if isinstance(t, EventEnded)]

    @property
    def vetoed(self) -> list[Event]:
        """The candidates the second stage turned down (and never passed later), in order."""
        return [t.event for t in self.transitions if isinstance(t, EventVetoed) and t.event.is_vetoed]

    def extend(self, other: StreamResult) -> None:
        self.windows += other.windows
        self.transitions += other.transitions


class DetectionPipeline:
    """The one composition of a scorer and the decisions: `push` audio, get each window's decision
    and the event transitions. Stream time runs on across `restart` (a reopened device). With a
    `verifier`, each candidate event is confirmed by it on the audio of the windows that raised it."""

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
        verifier: WindowVerifier | None = None,
        plan: VerifierPlan | None = None,
    ) -> None:
        """`plan`: the verifier's settings behind this model (verifier_plan); without one it runs
        with the threshold and attempts it holds."""
        self.features = features
        self.hop_frames = hop_frames
        self.verifier = verifier
        self.plan = plan if verifier is not None else None  # the verifier's settings in force
        if verifier is not None and plan is not None:
            verifier.threshold, verifier.attempts = plan.threshold, plan.attempts
        if verifier is not None and verifier.threshold == 0:
            raise ValueError("a verifier whose threshold is the model's pair runs with that plan (site_settings)")
        if verifier is not None and features.sample_rate_hz != VERIFIER_RATE_HZ:
            raise ModelError(f"the verifier hears {VERIFIER_RATE_HZ} Hz audio, the model {features.sample_rate_hz} Hz")
        self.detector = Detector(
            decisions,
            schedules,
            verify=self._verify if verifier is not None else None,
            verify_threshold=verifier.threshold if verifier is not None else 0.0,
            verify_attempts=verifier.attempts if verifier is not None else 1,
        )
        self.clock = clock
        self.offset_s = 0.0  # stream time before the current audio session
        self.scorer = self._new_scorer(classifier, source_rate_hz)

    def _new_scorer(self, classifier: WindowScorer, source_rate_hz: int) -> StreamingScorer:
        history_s = 0.0
        if self.verifier is not None:  # the verified windows, one verifier window and a chunk's slack
            rate = self.features.sample_rate_hz
            hop_s = self.hop_frames * self.features.hop_samples / rate
            history_s = MAX_VERIFY_WINDOWS * hop_s + self.verifier.window_samples / rate + 2.0
        return StreamingScorer(
            classifier, self.features, hop_frames=self.hop_frames, source_rate_hz=source_rate_hz, history_s=history_s
        )

    def _verify(self, start_s: float, detected_s: float) -> float:
        """The verifier's verdict on the audio of the windows that raised a candidate event."""
        assert self.verifier is not None
        scorer, offset, rate = self.scorer, self.offset_s, self.features.sample_rate_hz
        hop_s, window_s = scorer.window_bounds(1)[0], scorer.window_bounds(0)[1]
        starts = raising_windows(start_s - offset, detected_s - offset, hop_s=hop_s, window_s=window_s)
        return self.verifier.judge([scorer.audio(round(t * rate), self.verifier.window_samples) for t in starts])

    @classmethod
    def for_model(
        cls,
        classifier: Classifier,
        config: Config | None = None,
        *,
        source_rate_hz: int,
        threshold: float | None = None,
        clock: Clock = no_clock,
        verifier: WindowVerifier | None = None,
    ) -> DetectionPipeline:
        """The pipeline a site runs: the model's features and operating point under the config's
        `[detector]` and `[[schedule]]` (defaults without a config), optionally another `on`, and the
        config's `[verifier]` (loaded here unless one is given)."""
        config = config or Config()
        side = classifier.sidecar
        verifier = verifier if verifier is not None else EventVerifier.from_config(config.verifier)
        decisions, hop, plan = site_settings(side, config, verifier, threshold=threshold)
        return cls(
            classifier,
            side.features,
            decisions,
            hop_frames=hop,
            source_rate_hz=source_rate_hz,
            schedules=config.schedule,
            clock=clock,
            verifier=verifier,
            plan=plan,
        )

    @property
    def stream_s(self) -> float:
        """Audio pushed so far, in seconds of stream time."""
        return self.offset_s + self.scorer.samples_in / self.features.sample_rate_hz

    def restart(self, source_rate_hz: int) -> None:
        """A new audio session (a reopened device, maybe at another rate): a fresh scorer, while
        stream time and the decisions (an open event, the cooldown, the noise floor) carry on."""
        self.offset_s = self.stream_s
        self.scorer = self._new_scorer(self.scorer.classifier, source_rate_hz)

    def use_model(self, classifier: WindowScorer, decisions: DecisionParams, plan: VerifierPlan | None = None) -> None:
        """A reloaded model of the same input shape, with its own operating point (and its
        verifier's plan, site_settings)."""
        self.scorer.classifier = classifier
        if self.verifier is None or plan is None:
            self.detector.retune(decisions)
            return
        self.detector.retune(decisions, verify_threshold=plan.threshold, verify_attempts=plan.attempts)
        self.verifier.threshold, self.verifier.attempts = plan.threshold, plan.attempts
        self.plan = plan

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
    vetoed: list[Event] = field(default_factory=list)  # candidates the second stage turned down

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
                | ({} if e.verify_score is None else {"verify_score": round(e.verify_score, 4)})
                for e in self.events
            ],
            "vetoed": [
                {"start_s": round(e.start_s, 3), "verify_score": round(e.verify_score or 0.0, 4)} for e in self.vetoed
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
    verifier: WindowVerifier | None = None,
) -> FileReport:
    """Replay one file through the pipeline a site runs (`config`'s `[detector]`, gate included, and
    its `[verifier]` unless one already loaded is given) as fast as possible. Schedules need a
    wall-clock time, which a file has not: they do not apply."""
    audio = open_audio(path)
    pipeline = DetectionPipeline.for_model(
        classifier, config, source_rate_hz=audio.sample_rate_hz, threshold=threshold, verifier=verifier
    )
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
        result.vetoed,
    )
