"""Audio sources for the live pipeline: a pyaudio microphone, file replay and in-memory audio.

Every source delivers mono float32 chunks at its own `sample_rate_hz`; the pipeline resamples.
A source signals a dead or stalled device with `SourceError`, which the service retries.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge.audio import open_audio
from edge.errors import ExtraMissingError, ScreamError

FloatArray = npt.NDArray[np.float32]
log = logging.getLogger("scream")
PREFERRED_RATES_HZ = (48000, 44100, 32000, 22050, 96000, 8000)


class SourceError(ScreamError, OSError):
    """The audio device is gone, failed, or delivered nothing for too long."""


class EndOfStream(ScreamError):
    """A finite source (file replay, in-memory audio) has nothing more to give."""


@dataclass
class SourceStats:
    chunks: int = 0
    overflows: int = 0  # chunks dropped because the consumer fell behind, plus driver overflows
    last_audio_monotonic: float = 0.0


class AudioSource(Protocol):
    sample_rate_hz: int
    stats: SourceStats
    description: str

    def open(self) -> None: ...

    def read(self, timeout_s: float) -> FloatArray | None:
        """The next chunk; None if nothing arrived within the timeout; raises SourceError or EndOfStream."""
        ...

    def close(self) -> None: ...


@dataclass
class ArraySource:
    """In-memory audio, delivered chunk by chunk as fast as it is read."""

    samples: FloatArray
    sample_rate_hz: int
    chunk_frames: int = 1600
    description: str = "memory"
    stats: SourceStats = field(default_factory=SourceStats)
    _position: int = 0

    def open(self) -> None:
        self._position = 0

    def read(self, timeout_s: float) -> FloatArray | None:
        if self._position >= self.samples.size:
            raise EndOfStream("end of in-memory audio")
        chunk = self.samples[self._position : self._position + self.chunk_frames]
        self._position += chunk.size
        self.stats.chunks += 1
        self.stats.last_audio_monotonic = time.monotonic()
        return np.asarray(chunk, dtype=np.float32)

    def close(self) -> None:
        pass


class FileSource:
    """Replays an audio file at real time (as a microphone would deliver it) or as fast as possible."""

    def __init__(self, path: str | os.PathLike[str], *, chunk_ms: int = 100, realtime: bool = True) -> None:
        self._audio = open_audio(path)
        self._warned = 0
        self._log_warnings()
        self.sample_rate_hz = self._audio.sample_rate_hz
        self.description = f"file {path}"
        self.stats = SourceStats()
        self._chunk_frames = max(1, self.sample_rate_hz * chunk_ms // 1000)
        self._realtime = realtime
        self._blocks: Iterator[FloatArray] | None = None
        self._started = 0.0
        self._delivered = 0

    def _log_warnings(self) -> None:
        """What `detect` prints beside its result, each warning once."""
        for warning in self._audio.warnings[self._warned :]:
            log.warning("%s: %s", self._audio.path, warning)
        self._warned = len(self._audio.warnings)

    def open(self) -> None:
        self._blocks = self._audio.blocks(self._chunk_frames)
        self._started = time.monotonic()
        self._delivered = 0

    def read(self, timeout_s: float) -> FloatArray | None:
        if self._blocks is None:
            raise SourceError("file source read before open")
        chunk = next(self._blocks, None)
        if chunk is None:
            self._log_warnings()  # the decoder's, known once the file is decoded
            raise EndOfStream(f"end of {self.description}")
        if self._realtime:
            due = self._started + (self._delivered + chunk.size) / self.sample_rate_hz
            time.sleep(max(0.0, due - time.monotonic()))
        self._delivered += chunk.size
        self.stats.chunks += 1
        self.stats.last_audio_monotonic = time.monotonic()
        return chunk

    def close(self) -> None:
        self._blocks = None


def _import_pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError as exc:
        raise ExtraMissingError("pyaudio", "edge", "microphone capture") from exc
    return pyaudio


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    channels: int
    default_rate_hz: int
    supported_rates_hz: tuple[int, ...]


def list_input_devices() -> list[InputDevice]:
    """Input devices pyaudio sees, with the sample rates each accepts for mono 32-bit float."""
    pyaudio = _import_pyaudio()
    pa = pyaudio.PyAudio()
    try:
        devices = []
        for index in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(index)
            if int(info.get("maxInputChannels", 0)) < 1:
                continue
            rates = []
            for rate in sorted({16000, *PREFERRED_RATES_HZ}):
                try:
                    if pa.is_format_supported(
                        rate, input_device=index, input_channels=1, input_format=pyaudio.paFloat32
                    ):
                        rates.append(rate)
                except ValueError:
                    continue
            devices.append(
                InputDevice(
                    index,
                    str(info["name"]),
                    int(info["maxInputChannels"]),
                    int(info["defaultSampleRate"]),
                    tuple(rates),
                )
            )
        return devices
    finally:
        pa.terminate()


def choose_device(devices: list[InputDevice], wanted: int | str) -> InputDevice:
    if not devices:
        raise SourceError("no audio input device found (is the USB microphone plugged in?)")
    if isinstance(wanted, int):
        for device in devices:
            if device.index == wanted:
                return device
        raise SourceError(f"no input device with index {wanted}; inputs: {_names(devices)}")
    if wanted == "":
        return devices[0]
    matches = [d for d in devices if wanted.lower() in d.name.lower()]
    if not matches:
        raise SourceError(f"no input device name contains {wanted!r}; inputs: {_names(devices)}")
    return matches[0]


def choose_rate(device: InputDevice, model_rate_hz: int, wanted_hz: int = 0) -> int:
    """The configured rate if given, else the model rate if supported, else the best common rate."""
    if wanted_hz:
        if device.supported_rates_hz and wanted_hz not in device.supported_rates_hz:
            raise SourceError(f"{device.name} does not support {wanted_hz} Hz (it offers {device.supported_rates_hz})")
        return wanted_hz
    for rate in (model_rate_hz, *PREFERRED_RATES_HZ):
        if rate in device.supported_rates_hz:
            return rate
    return device.default_rate_hz


def _names(devices: list[InputDevice]) -> str:
    return ", ".join(f"{d.index}: {d.name}" for d in devices)


class PyAudioSource:
    """A microphone through PortAudio. The callback only copies into a bounded queue."""

    def __init__(
        self,
        device: int | str = "",
        *,
        model_rate_hz: int = 16000,
        sample_rate_hz: int = 0,
        chunk_ms: int = 100,
        queue_s: float = 5.0,
        stall_s: float = 2.0,
    ) -> None:
        self._wanted_device, self._wanted_rate, self._model_rate = device, sample_rate_hz, model_rate_hz
        self._chunk_ms, self._queue_s, self._stall_s = chunk_ms, queue_s, stall_s
        self.sample_rate_hz = sample_rate_hz or model_rate_hz
        self.stats = SourceStats()
        self.description = "microphone (not opened)"
        self._queue: collections.deque[FloatArray] = collections.deque()
        self._max_chunks = 1
        self._lock = threading.Condition()
        self._pa: Any = None
        self._stream: Any = None
        self._error: str | None = None

    def open(self) -> None:
        pyaudio = _import_pyaudio()
        device = choose_device(list_input_devices(), self._wanted_device)
        self.sample_rate_hz = choose_rate(device, self._model_rate, self._wanted_rate)
        frames = max(1, self.sample_rate_hz * self._chunk_ms // 1000)
        self._max_chunks = max(2, int(self._queue_s * 1000 / self._chunk_ms))
        self._queue.clear()
        self._error = None
        self._pa = pyaudio.PyAudio()
        try:
            self._stream = self._pa.open(
                format=pyaudio.paFloat32,
                channels=1,
                rate=self.sample_rate_hz,
                input=True,
                input_device_index=device.index,
                frames_per_buffer=frames,
                stream_callback=self._callback,
            )
        except OSError as exc:
            self.close()
            raise SourceError(f"cannot open {device.name} at {self.sample_rate_hz} Hz: {exc}") from exc
        self.description = f"{device.name} (index {device.index}) at {self.sample_rate_hz} Hz"
        self.stats.last_audio_monotonic = time.monotonic()

    def _callback(self, data: bytes, frame_count: int, time_info: Any, status: int) -> tuple[None, int]:
        chunk = np.frombuffer(data, dtype=np.float32).copy()
        with self._lock:
            if status:
                self.stats.overflows += 1
            if len(self._queue) >= self._max_chunks:
                self._queue.popleft()  # keep the newest audio: an alarm about now matters most
                self.stats.overflows += 1
            self._queue.append(chunk)
            self.stats.chunks += 1
            self.stats.last_audio_monotonic = time.monotonic()
            self._lock.notify()
        return None, 0  # paContinue

    def read(self, timeout_s: float) -> FloatArray | None:
        with self._lock:
            if not self._queue:
                self._lock.wait(timeout_s)
            if self._queue:
                return self._queue.popleft()
        if self._stream is None or not self._stream.is_active():
            raise SourceError(f"{self.description} stopped delivering audio (unplugged?)")
        if time.monotonic() - self.stats.last_audio_monotonic > self._stall_s:
            raise SourceError(f"{self.description}: no audio for {self._stall_s:.0f} s")
        return None

    def close(self) -> None:
        try:
            if self._stream is not None:
                self._stream.stop_stream()
                self._stream.close()
        except OSError:
            pass
        finally:
            self._stream = None
            if self._pa is not None:
                self._pa.terminate()
                self._pa = None
