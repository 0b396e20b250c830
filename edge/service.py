"""`scream listen`: the long-running detector. Capture -> pipeline -> decisions -> output queues.

Survives a microphone that errors or disappears (retries with backoff, reported in health), reloads
the model on SIGHUP or when its file changes (a bad model is refused and the running one kept),
drains outputs on SIGTERM, writes a health status file, and pings the systemd watchdog.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.classifier import Classifier, ModelSidecar
from edge.config import OUTPUTS, Config, DetectorConfig, ScheduleConfig
from edge.detector import DecisionParams, EventDetector, EventEnded, EventStarted
from edge.errors import ModelError, RuntimeMissingError
from edge.features import FeatureParams
from edge.health import Health
from edge.pipeline import StreamingScorer
from edge.sinks import AlarmMessage, ClipMessage, SinkWorker, health_of
from edge.sources import AudioSource, EndOfStream, SourceError
from edge.systemd import SystemdNotifier

log = logging.getLogger("scream")
FloatArray = npt.NDArray[np.float32]
NOISE_FLOOR_PERCENTILE = 10
NOISE_FLOOR_WINDOWS = 240  # one minute of 250 ms hops


@dataclass
class PendingClip:
    event: dict[str, Any]
    from_s: float
    until_s: float
    outputs: frozenset[str]


class AudioRing:
    """The last `capacity_s` seconds of source audio, for clip pre-roll (stream time in seconds)."""

    def __init__(self, capacity_s: float) -> None:
        self.capacity_s = capacity_s
        self._chunks: collections.deque[tuple[int, FloatArray]] = collections.deque()
        self.rate_hz = 0
        self._next = 0

    def reset(self, rate_hz: int, at_s: float) -> None:
        self._chunks.clear()
        self.rate_hz = rate_hz
        self._next = round(at_s * rate_hz)

    def append(self, chunk: FloatArray) -> None:
        self._chunks.append((self._next, chunk))
        self._next += chunk.size
        keep_from = self._next - int(self.capacity_s * self.rate_hz)
        while self._chunks and self._chunks[0][0] + self._chunks[0][1].size <= keep_from:
            self._chunks.popleft()

    @property
    def end_s(self) -> float:
        return self._next / self.rate_hz if self.rate_hz else 0.0

    def extract(self, from_s: float, until_s: float) -> FloatArray:
        lo, hi = round(from_s * self.rate_hz), round(until_s * self.rate_hz)
        parts = []
        for start, chunk in self._chunks:
            a, b = max(lo, start), min(hi, start + chunk.size)
            if b > a:
                parts.append(chunk[a - start : b - start])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def decisions_for(d: DetectorConfig, side: ModelSidecar, hop_frames: int) -> DecisionParams:
    """The `[detector]` settings over the model's own operating point, for windows `hop_frames` apart."""
    t = side.thresholds
    on = d.on_threshold or t.on
    off = d.off_threshold or (t.off * on / t.on)
    # The site's patience if set, else the model's own for the hop in use.
    patience = (d.patience_windows, d.patience_of) if d.patience_of else side.patience_at(hop_frames)
    return DecisionParams(
        on_threshold=on,
        off_threshold=min(off, on),
        patience_windows=patience[0],
        patience_of=patience[1],
        smoothing_windows=d.smoothing_windows or side.smoothing_at(hop_frames),
        min_event_s=d.min_event_s,
        max_event_s=d.max_event_s,
        cooldown_s=d.cooldown_s,
    )


class DetectorService:
    def __init__(
        self,
        config: Config,
        *,
        source: AudioSource,
        model_path: Path,
        outputs: list[SinkWorker],
        clock: Callable[[], float] = time.time,
        status_path: Path | None = None,
        notifier: SystemdNotifier | None = None,
        unavailable_outputs: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.model_path = model_path
        self.outputs = outputs
        self.clock = clock
        self.status_path = status_path
        self.notifier = notifier or SystemdNotifier("")
        self.unavailable_outputs = unavailable_outputs or {}
        self.health = Health()
        self.stop_event = threading.Event()
        self.reload_requested = threading.Event()
        self.classifier = self._load_model()
        self._model_mtime = self._mtime()
        self._base_decisions = self._decisions_for(self.classifier)
        self.detector = EventDetector(self._base_decisions)
        self._scorer: StreamingScorer | None = None
        self._stream_offset_s = 0.0  # audio time before the current device session
        d = config.detector
        self.ring = AudioRing(config.clips.pre_roll_s + d.max_event_s + config.clips.post_roll_s + 5.0)
        self._pending_clips: list[PendingClip] = []
        self._active_event: dict[str, Any] | None = None
        self._active_outputs: frozenset[str] = frozenset(OUTPUTS)
        self._levels: collections.deque[float] = collections.deque(maxlen=NOISE_FLOOR_WINDOWS)
        self._last_housekeeping = 0.0
        self._last_status = 0.0

    # -- model -----------------------------------------------------------------------------
    def _load_model(self) -> Classifier:
        classifier = Classifier(self.model_path, expected_features=FeatureParams())
        self.health.model_path = str(self.model_path)
        self.health.model_sha256 = classifier.sha256
        return classifier

    def _mtime(self) -> float:
        try:
            return self.model_path.stat().st_mtime
        except OSError:
            return 0.0

    def _decisions_for(self, classifier: Classifier) -> DecisionParams:
        side = classifier.sidecar
        return decisions_for(self.config.detector, side, self._hop_frames_for(side))

    def reload_model(self) -> bool:
        """Validate and swap in the model file; a bad one is refused and the running one kept."""
        self.notifier.notify("RELOADING=1")
        try:
            candidate = Classifier(self.model_path, expected_features=FeatureParams())
            if candidate.input_shape != self.classifier.input_shape:
                raise ModelError(f"input shape {candidate.input_shape} differs from the running model's")
        except (ModelError, RuntimeMissingError, OSError) as exc:
            self.health.reload_errors += 1
            self.health.last_reload_error = str(exc)
            log.error("model reload refused, keeping %s: %s", self.health.model_sha256[:12], exc)
            self.notifier.notify("READY=1")
            return False
        self.classifier = candidate
        self.health.model_sha256 = candidate.sha256
        self.health.reloads += 1
        self.health.last_reload_error = ""
        self._base_decisions = self._decisions_for(candidate)
        self.detector.retune(self._base_decisions)
        if self._scorer is not None:
            self._scorer.classifier = candidate
        log.info("model reloaded: %s sha256 %s", self.model_path, candidate.sha256[:12])
        self.notifier.notify("READY=1")
        return True

    # -- context ---------------------------------------------------------------------------
    def active_schedule(self) -> ScheduleConfig | None:
        moment = dt.datetime.fromtimestamp(self.clock())
        return next((s for s in self.config.schedule if s.is_active(moment)), None)

    def _apply_schedule(self) -> None:
        schedule = self.active_schedule()
        self.health.schedule = schedule.name if schedule else ""
        self._active_outputs = frozenset(schedule.outputs if schedule else OUTPUTS)
        params = self._base_decisions
        if schedule and schedule.on_threshold:
            params = params.with_threshold(schedule.on_threshold)
        self.detector.retune(params)

    def _is_loud_enough(self, level_dbfs: float) -> bool:
        d = self.config.detector
        self._levels.append(level_dbfs)
        gate = d.loudness_gate_dbfs
        if d.noise_floor_margin_db > 0 and len(self._levels) >= 8:
            floor = float(np.percentile(self._levels, NOISE_FLOOR_PERCENTILE))
            self.health.noise_floor_dbfs = round(floor, 1)
            gate = max(gate, floor + d.noise_floor_margin_db)
        return level_dbfs >= gate

    # -- events ----------------------------------------------------------------------------
    def _event_record(self, number: int, start_s: float, detected_s: float) -> dict[str, Any]:
        now_wall, now_stream = self.clock(), self.ring.end_s
        event_id = uuid.uuid4().hex[:12]
        return {
            "id": event_id,
            "number": number,
            "site": self.config.site.name,
            "location": self.config.site.location,
            "start": round(now_wall - (now_stream - start_s), 3),
            "start_stream_s": round(start_s, 3),
            "detected_stream_s": round(detected_s, 3),
            "end": None,
            "peak_score": None,
            "model_sha256": self.classifier.sha256,
            "schedule": self.health.schedule,
            "clip": f"{dt.datetime.fromtimestamp(now_wall).strftime('%Y%m%dT%H%M%S')}_{event_id}.wav",
        }

    def _dispatch(self, message: AlarmMessage | ClipMessage) -> None:
        for worker in self.outputs:
            worker.submit(message)

    def _handle_window(self, start_s: float, end_s: float, score: float, level_dbfs: float) -> None:
        self.health.windows += 1
        self._apply_schedule()
        gated = score if self._is_loud_enough(level_dbfs) or self._active_event else 0.0
        for transition in self.detector.update(gated, start_s, end_s):
            event = transition.event
            if isinstance(transition, EventStarted):
                record = self._event_record(event.number, event.start_s, event.detected_s)
                self._active_event = record
                self.health.events += 1
                self.health.event_active = True
                self._dispatch(AlarmMessage("start", dict(record), self._active_outputs))
            elif isinstance(transition, EventEnded) and self._active_event is not None:
                self._finish_event(event.end_s or end_s, event.peak_score)

    def _finish_event(self, end_s: float, peak: float) -> None:
        assert self._active_event is not None
        record = self._active_event
        record["end"] = round(record["start"] + (end_s - record["start_stream_s"]), 3)
        record["end_stream_s"] = round(end_s, 3)
        record["peak_score"] = round(peak, 4)
        self._dispatch(AlarmMessage("end", dict(record), self._active_outputs))
        if self.config.clips.enabled:
            c = self.config.clips
            self._pending_clips.append(
                PendingClip(
                    dict(record),
                    max(0.0, record["start_stream_s"] - c.pre_roll_s),
                    end_s + c.post_roll_s,
                    self._active_outputs,
                )
            )
        self.health.last_event = dict(record)
        self.health.event_active = False
        self._active_event = None

    def _flush_clips(self, *, force: bool = False) -> None:
        ready = [p for p in self._pending_clips if force or self.ring.end_s >= p.until_s]
        for pending in ready:
            self._pending_clips.remove(pending)
            samples = self.ring.extract(pending.from_s, pending.until_s)
            if samples.size:
                self._dispatch(ClipMessage(pending.event, samples, self.ring.rate_hz, pending.outputs))

    # -- audio -----------------------------------------------------------------------------
    @property
    def hop_frames(self) -> int:
        """[detector].hop_ms in feature frames, or the model's own hop."""
        return self._hop_frames_for(self.classifier.sidecar)

    def _hop_frames_for(self, side: ModelSidecar) -> int:
        if self.config.detector.hop_ms:
            return side.hop_frames_for(self.config.detector.hop_ms)
        return side.hop_frames

    def _start_session(self) -> None:
        """A (re)opened device starts a new scorer; stream time continues where it stopped."""
        if self._scorer is not None:
            self._stream_offset_s = self.ring.end_s
        side = self.classifier.sidecar
        self._scorer = StreamingScorer(
            self.classifier, side.features, hop_frames=self.hop_frames, source_rate_hz=self.source.sample_rate_hz
        )
        self.ring.reset(self.source.sample_rate_hz, self._stream_offset_s)

    def process_chunk(self, chunk: FloatArray) -> None:
        assert self._scorer is not None
        self.ring.append(chunk)
        for window in self._scorer.push(chunk):
            offset = self._stream_offset_s
            self._handle_window(window.start_s + offset, window.end_s + offset, window.score, window.level_dbfs)
        self._flush_clips()
        self.health.chunks += 1
        self.health.overflows = self.source.stats.overflows
        self.health.audio_s = round(self.ring.end_s, 3)
        self.health.last_audio_at = self.clock()

    def _end_of_stream(self) -> None:
        if self._scorer is not None:
            for window in self._scorer.flush():
                offset = self._stream_offset_s
                self._handle_window(window.start_s + offset, window.end_s + offset, window.score, window.level_dbfs)
        self._close_events()

    def _close_events(self) -> None:
        """End an open event now (end of stream or shutdown) and hand over every pending clip."""
        for transition in self.detector.finish(self.ring.end_s):
            if isinstance(transition, EventEnded) and self._active_event is not None:
                self._finish_event(transition.event.end_s or self.ring.end_s, transition.event.peak_score)
        self._flush_clips(force=True)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_housekeeping < 0.5:
            return
        self._last_housekeeping = now
        self.health.overflows = self.source.stats.overflows
        if self.config.model.watch and now - getattr(self, "_last_watch", 0.0) >= self.config.model.watch_interval_s:
            self._last_watch = now
            mtime = self._mtime()
            if mtime and mtime != self._model_mtime:
                self._model_mtime = mtime
                self.reload_requested.set()
        if self.reload_requested.is_set():
            self.reload_requested.clear()
            self._model_mtime = self._mtime()
            self.reload_model()
        self.write_status()
        # The loop is alive (reads time out every 0.5 s), so the watchdog is fed even while a lost
        # microphone is being retried; systemd restarts us only if this loop hangs.
        self.notifier.notify(
            f"WATCHDOG=1\nSTATUS=audio {self.health.device_state}, {self.health.events} events, "
            f"model {self.health.model_sha256[:12]}"
        )

    def write_status(self) -> None:
        outputs = health_of(self.outputs)
        outputs.update({name: {"unavailable": why} for name, why in self.unavailable_outputs.items()})
        self.health.outputs = outputs
        if self.status_path is not None:
            self.health.write(self.status_path)

    def run(self) -> int:
        """Until stop is requested or a finite source ends; returns 0 (clean) or 1 (gave up)."""
        backoff = self.config.audio.retry_initial_s
        is_open = False
        self.notifier.notify("READY=1")
        try:
            while not self.stop_event.is_set():
                if not is_open:
                    try:
                        self.source.open()
                    except SourceError as exc:
                        self._device_failed(exc)
                        self.stop_event.wait(backoff)
                        backoff = min(backoff * 2, self.config.audio.retry_max_s)
                        self._housekeeping()
                        continue
                    is_open = True
                    self.health.device = self.source.description
                    self.health.device_state = "ok"
                    self._start_session()
                try:
                    chunk = self.source.read(0.5)
                except SourceError as exc:
                    self._device_failed(exc)
                    self.source.close()
                    is_open = False
                    continue
                except EndOfStream:
                    self._end_of_stream()
                    break
                if chunk is not None:
                    backoff = self.config.audio.retry_initial_s
                    self.process_chunk(chunk)
                self._housekeeping()
        finally:
            self.notifier.notify("STOPPING=1")
            self._close_events()
            self.source.close()
            for worker in self.outputs:
                worker.drain()
            self.health.device_state = "stopped"
            self.write_status()
        return 0

    def _device_failed(self, exc: Exception) -> None:
        self.health.device_errors += 1
        self.health.device_state = "retrying"
        self.health.last_device_error = str(exc)
        log.warning("audio device problem, retrying: %s", exc)
