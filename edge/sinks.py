"""Event outputs, each behind its own bounded queue and thread so none can stall capture.

GPIO LED and buzzer (gpiozero), a rotating JSON-lines event log, and a clip saver with retention
by count, bytes and free disk. Remote alerts (MQTT, webhook) plug in through the same `Sink` shape.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import math
import queue
import shutil
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from edge.audio import write_wav
from edge.config import ClipsConfig, EventLogConfig, GpioConfig
from edge.errors import ExtraMissingError
from edge.labels import LabelStore

log = logging.getLogger("scream")


@dataclass(frozen=True)
class AlarmMessage:
    """An event starting or ending; `outputs` are the outputs the active schedule allows."""

    kind: Literal["start", "end", "vetoed"]  # vetoed: a candidate the second stage turned down, ended
    event: dict[str, Any]
    outputs: frozenset[str]


@dataclass(frozen=True)
class ClipMessage:
    event: dict[str, Any]
    samples: npt.NDArray[np.float32]
    sample_rate_hz: int
    outputs: frozenset[str]


Message = AlarmMessage | ClipMessage


class Sink(Protocol):
    name: str

    def handle(self, message: Message) -> None: ...

    def close(self) -> None: ...


@dataclass
class SinkStats:
    handled: int = 0
    dropped: int = 0
    errors: int = 0
    last_error: str = ""


_STOP = object()


class SinkWorker:
    """Runs one sink on its own thread; `submit` never blocks (a full queue drops and counts)."""

    def __init__(self, sink: Sink, *, max_queue: int = 256) -> None:
        self.sink = sink
        self.stats = SinkStats()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name=f"sink-{sink.name}", daemon=True)
        self._thread.start()

    def submit(self, message: Message) -> None:
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.stats.dropped += 1

    def _run(self) -> None:
        while True:
            message = self._queue.get()
            if message is _STOP:
                return
            try:
                self.sink.handle(message)
                self.stats.handled += 1
            except Exception as exc:  # a failing output must never take the detector down
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("output %s failed", self.sink.name)

    def drain(self, timeout_s: float = 10.0) -> None:
        """Handle what is queued, then stop the thread and close the sink."""
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout_s)
        self._thread.join(timeout_s)
        self.sink.close()

    def health(self) -> dict[str, Any]:
        """The worker's counters, with the sink's own (clips saved, alerts pending, ...) when it has them."""
        own = getattr(self.sink, "health", None)
        return {
            **(own() if callable(own) else {}),
            "queued": self._queue.qsize(),
            "handled": self.stats.handled,
            "dropped": self.stats.dropped,
            "errors": self.stats.errors,
            "last_error": self.stats.last_error,
        }


class GpioAlarm:
    """LED on (or blinking) for the length of an event; buzzer beeping for at most `buzzer_max_s`."""

    name = "gpio"

    def __init__(self, config: GpioConfig, *, pin_factory: Any = None) -> None:
        try:
            from gpiozero import LED, Buzzer
        except ImportError as exc:
            raise ExtraMissingError("gpiozero", "edge", "GPIO outputs") from exc
        self.config = config
        # Off a Pi gpiozero tries each pin library in turn and warns for every one it lacks
        # (PinFactoryFallback); the caller reports the one outcome that matters instead.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ff]alling back.*")
            self.led = LED(config.led_pin, active_high=config.active_high, initial_value=False, pin_factory=pin_factory)
            self.buzzer = Buzzer(
                config.buzzer_pin, active_high=config.active_high, initial_value=False, pin_factory=pin_factory
            )

    def handle(self, message: Message) -> None:
        if not isinstance(message, AlarmMessage):
            return
        c = self.config
        if message.kind == "start":
            if "led" in message.outputs:
                if c.led_blink:
                    self.led.blink(on_time=0.25, off_time=0.25, background=True)
                else:
                    self.led.on()
            if "buzzer" in message.outputs and c.buzzer_max_s > 0:
                # Whole on/off cycles within buzzer_max_s (the epsilon: 0.6 / 0.2 is 2.999... in floats).
                cycles = max(1, math.floor(c.buzzer_max_s / (c.buzzer_on_s + c.buzzer_off_s) + 1e-9))
                if c.buzzer_off_s == 0:
                    self.buzzer.blink(on_time=c.buzzer_max_s, off_time=0.0, n=1, background=True)
                else:
                    self.buzzer.beep(on_time=c.buzzer_on_s, off_time=c.buzzer_off_s, n=cycles, background=True)
        elif message.kind == "end":
            self.led.off()
            self.buzzer.off()

    def close(self) -> None:
        self.led.close()
        self.buzzer.close()


class EventLog:
    """JSON lines, one per event start and end, rotated by size (stdlib RotatingFileHandler)."""

    name = "event_log"

    def __init__(self, config: EventLogConfig, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=config.max_bytes, backupCount=config.backups, encoding="utf-8"
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def handle(self, message: Message) -> None:
        if isinstance(message, AlarmMessage) and "event_log" in message.outputs:
            record = {"type": f"event_{message.kind}", **message.event}
            self._handler.emit(logging.makeLogRecord({"msg": json.dumps(record, sort_keys=True)}))

    def close(self) -> None:
        self._handler.close()


class ClipSaver:
    """Writes each event's audio (pre-roll, event, post-roll) as WAV, within count, byte and disk bounds."""

    name = "clips"

    def __init__(self, config: ClipsConfig, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.directory = directory
        self.saved = 0
        self.skipped = 0
        self.deleted = 0

    def _clips(self) -> dict[Path, int]:
        """The stored clips and their sizes, oldest first (by time, then name); one removed while
        the folder is read (by hand, or by `scream review`) is left out."""
        found = []
        for path in self.directory.glob("*.wav"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            found.append((st.st_mtime, path.name, path, st.st_size))
        return {path: size for _, _, path, size in sorted(found)}

    def handle(self, message: Message) -> None:
        if not isinstance(message, ClipMessage) or "clips" not in message.outputs:
            return
        size = 44 + 2 * message.samples.size
        c = self.config
        if size > c.max_bytes:
            self.skipped += 1
            log.warning("clip of %s is larger than clips.max_bytes; not saved", message.event["id"])
            return
        clips = self._clips()
        total = sum(clips.values())
        count = len(clips)
        free = shutil.disk_usage(self.directory).free
        # Labelled clips not yet fetched by `scream pull` are kept (edge/labels.py).
        protected = LabelStore(self.directory).protected()
        deletable = [p for p in clips if p.name not in protected]

        def over() -> bool:
            return count >= c.max_count or total + size > c.max_bytes or free - size < c.min_free_bytes

        # Oldest first, until count, bytes and the free-disk margin all leave room for this clip.
        while deletable and over():
            oldest = deletable.pop(0)
            freed = clips[oldest]
            oldest.unlink(missing_ok=True)  # gone meanwhile: its room is free all the same
            total -= freed
            free += freed
            count -= 1
            self.deleted += 1
        if over():
            self.skipped += 1
            why = (
                "disk below clips.min_free_bytes"
                if free - size < c.min_free_bytes
                else f"the clip store is full of {len(protected)} labelled clip(s) not yet fetched (scream pull)"
            )
            log.warning("%s; clip of %s not saved", why, message.event["id"])
            return
        target = self.directory / message.event["clip"]
        tmp = target.with_suffix(".wav.part")
        write_wav(tmp, message.samples, message.sample_rate_hz)
        tmp.replace(target)
        self.saved += 1

    def health(self) -> dict[str, Any]:
        return {"saved": self.saved, "skipped": self.skipped, "deleted": self.deleted}

    def close(self) -> None:
        pass


class ConsoleLog:
    """One line per event start and end on stdout, for people watching a terminal."""

    name = "console"

    def handle(self, message: Message) -> None:
        if isinstance(message, AlarmMessage):
            e = message.event
            if message.kind == "start":
                print(f"ALARM ON   event {e['id']} at {e['start_stream_s']:.2f} s ({e['site']})", flush=True)
            elif message.kind == "end":
                print(
                    f"alarm off  event {e['id']} {e['start_stream_s']:.2f}-{e['end_stream_s']:.2f} s "
                    f"peak {e['peak_score']:.2f}",
                    flush=True,
                )

    def close(self) -> None:
        pass


def health_of(workers: list[SinkWorker]) -> dict[str, Any]:
    return {w.sink.name: w.health() for w in workers}
