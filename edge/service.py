"""`scream listen`: the long-running detector. Capture -> pipeline (scores and decisions) -> outputs.

Orchestration only: the decisions are edge.detector's (through edge.pipeline, as every command),
clips and their pre-roll are edge.clips', the model and its reloads edge.running_model's, the status
file edge.health's. This loop survives a microphone that errors or disappears (retries with
backoff, reported in health), reloads the model on SIGHUP or when its file changes, drains outputs
on SIGTERM, writes the health status, and pings the systemd watchdog.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.classifier import Classifier
from edge.clips import AudioRing, ClipCutter
from edge.config import Config
from edge.detector import Detector, EventEnded, EventStarted, EventVetoed, Transition, VetoedEnded, VetoLifted
from edge.health import Health
from edge.pipeline import DetectionPipeline, StreamResult, site_settings
from edge.running_model import RunningModel
from edge.sinks import AlarmMessage, ClipMessage, SinkWorker, health_of
from edge.sources import AudioSource, EndOfStream, SourceError
from edge.systemd import SystemdNotifier
from edge.verifier import EventVerifier

log = logging.getLogger("scream")
FloatArray = npt.NDArray[np.float32]


def listen_argv(*, config: Path, model: Path, source: Path, fast: bool = False) -> list[str]:
    """The command line of `scream listen` replaying `source` in a child process (bench, tests)."""
    argv = [sys.executable, "-m", "edge", "listen", "--config", str(config), "--model", str(model)]
    return [*argv, "--source", str(source), *(["--fast"] if fast else [])]


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
        self.outputs = outputs
        self.clock = clock
        self.status_path = status_path
        self.notifier = notifier or SystemdNotifier("")
        self.unavailable_outputs = unavailable_outputs or {}
        self.health = Health()
        self.stop_event = threading.Event()
        self.reload_requested = threading.Event()
        self.model = RunningModel(
            model_path, self.health, watch=config.model.watch, watch_interval_s=config.model.watch_interval_s
        )
        self.pipeline = DetectionPipeline.for_model(  # its scorer is replaced when a device opens
            self.model.classifier,
            config,
            source_rate_hz=self.model.classifier.sidecar.features.sample_rate_hz,
            clock=lambda _stream_s: dt.datetime.fromtimestamp(self.clock()),
        )
        verifier, plan = self.pipeline.verifier, self.pipeline.plan
        if isinstance(verifier, EventVerifier) and plan is not None:
            log.info(
                "verifier %s: a candidate fires only if %s reaches its threshold, on %g: %s",
                verifier.model_path,
                verifier.verdict,
                self.detector.base_params.on_threshold,
                plan.describe(),
            )
        self.clips = ClipCutter(config.clips, config.detector.max_event_s)
        self._active_event: dict[str, Any] | None = None  # the open event's record, as the outputs got it
        self._active_outputs: frozenset[str] = frozenset()  # what the schedule in force lets fire
        # The open vetoed candidate's record and the outputs it may reach (the event log and clips only).
        self._vetoed: tuple[dict[str, Any], frozenset[str]] | None = None
        self._last_housekeeping = 0.0

    @property
    def classifier(self) -> Classifier:
        return self.model.classifier

    @property
    def detector(self) -> Detector:
        return self.pipeline.detector

    @property
    def ring(self) -> AudioRing:
        return self.clips.ring

    def reload_model(self) -> bool:
        """Validate and swap in the model file; a bad one is refused and the running one kept."""
        self.notifier.notify("RELOADING=1")
        verifier = self.pipeline.verifier
        reloaded = self.model.reload(lambda c: site_settings(c.sidecar, self.config, verifier))
        if reloaded is not None:
            candidate, (decisions, _, plan) = reloaded
            self.pipeline.use_model(candidate, decisions, plan)
            if plan is not None:
                log.info("verifier behind %s: %s", candidate.sidecar.name, plan.describe())
        self.notifier.notify("READY=1")
        return reloaded is not None

    def _event_record(
        self, number: int, start_s: float, detected_s: float, verify_score: float | None = None
    ) -> dict[str, Any]:
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
        } | ({} if verify_score is None else {"verify_score": round(verify_score, 4)})

    def _dispatch(self, message: AlarmMessage | ClipMessage) -> None:
        for worker in self.outputs:
            worker.submit(message)

    def _handle(self, result: StreamResult) -> None:
        """Each window's schedule and events, in order, then events closed without a window."""
        for window in result.windows:
            self.health.windows += 1
            self.health.schedule = window.schedule
            self._active_outputs = window.outputs
            for transition in window.transitions:
                self._transition(transition)
        self.health.noise_floor_dbfs = self.detector.noise_floor_dbfs
        for transition in result.transitions[sum(len(w.transitions) for w in result.windows) :]:
            self._transition(transition)
        for clip in self.clips.ready():
            self._dispatch(clip)

    def _transition(self, transition: Transition) -> None:
        event = transition.event
        if isinstance(transition, EventVetoed):
            log.info(
                "candidate at %.2f s vetoed by the verifier (score %.3f < %g)",
                event.start_s,
                event.verify_score or 0.0,
                self.detector.verify_threshold,
            )
            record = self._event_record(event.number, event.start_s, event.detected_s, event.verify_score)
            self._vetoed = (record | {"vetoed": True}, self._active_outputs & {"event_log", "clips"})
        elif isinstance(transition, VetoedEnded) and self._vetoed is not None:
            self._finish_vetoed(event.end_s if event.end_s is not None else self.ring.end_s, event.peak_score)
        elif isinstance(transition, EventStarted):
            record = self._event_record(event.number, event.start_s, event.detected_s, event.verify_score)
            if isinstance(transition, VetoLifted):  # a later verdict passed: the candidate fires, not a veto
                log.info("candidate at %.2f s confirmed by a later verdict (number %d)", event.start_s, event.verdicts)
                record["verdicts"] = event.verdicts
                self._vetoed = None
            self._active_event = record
            self.health.events += 1
            self.health.event_active = True
            self._dispatch(AlarmMessage("start", dict(record), self._active_outputs))
        elif isinstance(transition, EventEnded) and self._active_event is not None:
            self._finish_event(event.end_s if event.end_s is not None else self.ring.end_s, event.peak_score)

    @staticmethod
    def _close_record(record: dict[str, Any], end_s: float, peak: float) -> None:
        """An event record's end (wall clock and stream) and peak, once its span has closed."""
        record["end"] = round(record["start"] + (end_s - record["start_stream_s"]), 3)
        record["end_stream_s"] = round(end_s, 3)
        record["peak_score"] = round(peak, 4)

    def _finish_event(self, end_s: float, peak: float) -> None:
        assert self._active_event is not None
        record = self._active_event
        self._close_record(record, end_s, peak)
        self._dispatch(AlarmMessage("end", dict(record), self._active_outputs))
        self.clips.event_ended(record, end_s, self._active_outputs)
        self.health.last_event = dict(record)
        self.health.event_active = False
        self._active_event = None

    def _finish_vetoed(self, end_s: float, peak: float) -> None:
        """A vetoed candidate's line in the event log (`event_vetoed`), and with `[clips] keep_vetoed`
        its clip, for `scream review`: the verifier's calls, to be labelled like any event's."""
        assert self._vetoed is not None
        record, outputs = self._vetoed
        self._vetoed = None
        self._close_record(record, end_s, peak)
        if not (self.config.clips.keep_vetoed and self.config.clips.enabled and "clips" in outputs):
            del record["clip"]  # the event log names no clip that is not kept
        self._dispatch(AlarmMessage("vetoed", dict(record), outputs))
        if "clip" in record:
            self.clips.event_ended(record, end_s, outputs)

    # -- audio -----------------------------------------------------------------------------
    def _start_session(self) -> None:
        """An opened device (the first, or a reopened one): a new scorer at the rate the device was
        opened at (a microphone picks its rate on opening); stream time continues where it stopped."""
        self.pipeline.restart(self.source.sample_rate_hz)
        self.ring.reset(self.source.sample_rate_hz, self.pipeline.offset_s)

    def process_chunk(self, chunk: FloatArray) -> None:
        self.ring.append(chunk)
        self._handle(self.pipeline.push(chunk))
        self.health.chunks += 1
        self.health.overflows = self.source.stats.overflows
        self.health.audio_s = round(self.ring.end_s, 3)
        self.health.last_audio_at = self.clock()

    def _end_of_stream(self) -> None:
        self._handle(self.pipeline.flush())
        self._close_events()

    def _close_events(self) -> None:
        """End an open event now (end of stream or shutdown) and hand over every pending clip."""
        self._handle(self.pipeline.finish())
        for clip in self.clips.ready(force=True):
            self._dispatch(clip)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_housekeeping < 0.5:
            return
        self._last_housekeeping = now
        self.health.overflows = self.source.stats.overflows
        if self.model.file_changed():
            self.reload_requested.set()
        if self.reload_requested.is_set():
            self.reload_requested.clear()
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
        verifier = self.pipeline.verifier
        self.health.verifier = verifier.status() if isinstance(verifier, EventVerifier) else {}
        if self.status_path is not None:
            self.health.write(self.status_path)

    def run(self) -> int:
        """Until stop is requested or a finite source ends; returns 0. A device that fails is retried
        (with backoff) for as long as the service runs, never given up on."""
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
