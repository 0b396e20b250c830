"""Audio file input: WAV read here without extra dependencies, other formats via soundfile.

`open_audio(path)` checks the header and returns an `AudioFile` whose `blocks()` streams mono
float32 samples at the file's own rate in bounded memory. Every problem is an `AudioError` whose
message says what is wrong with the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from edge.errors import AudioError, ExtraMissingError

FloatArray = npt.NDArray[np.float32]

MIN_SAMPLE_RATE_HZ = 1000
MAX_SAMPLE_RATE_HZ = 768000
AUDIO_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"})

# Compressed formats are decoded in blocks of this many frames whatever the caller asks for: some
# decoders (libsndfile's MP3 through libmpg123, on damaged frames) give other samples for other read
# sizes, and a file must give the same samples to `detect` (64 k blocks) and `listen` (100 ms).
DECODE_FRAMES = 1 << 18
# Lines a decoder library prints on stderr for each damaged frame.
_DECODER_NOISE = re.compile(
    r"^\[src/libmpg123/|^\[.*mpg123.*\]|^Note: |part2_3_length|Illegal Audio-MPEG-Header|big_values"
)

_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_IEEE_FLOAT = 0x0003
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE


@dataclass
class AudioFile:
    """An opened audio file: its format, and a way to stream its samples as mono float32."""

    path: Path
    sample_rate_hz: int
    channels: int
    frames: int
    format_name: str
    warnings: list[str] = field(default_factory=list)
    _reader: Any = field(default=None, repr=False)

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate_hz

    def blocks(self, block_frames: int = 65536) -> Iterator[FloatArray]:
        """Mono float32 blocks; raises `AudioError` on a NaN or infinite sample."""
        position = 0
        for block in self._reader(block_frames):
            mono = block.mean(axis=1, dtype=np.float32) if block.ndim == 2 else block
            if not np.all(np.isfinite(mono)):
                bad = position + int(np.flatnonzero(~np.isfinite(mono))[0])
                raise AudioError(f"{self.path}: non-finite sample (NaN or inf) at {bad / self.sample_rate_hz:.3f} s")
            position += mono.size
            yield mono.astype(np.float32, copy=False)

    def read_all(self) -> FloatArray:
        parts = list(self.blocks())
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _check_rate(path: Path, rate: int) -> None:
    if not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
        raise AudioError(f"{path}: sample rate {rate} Hz is outside {MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ} Hz")


class _UnsupportedWavEncoding(AudioError):
    """A valid WAV whose sample encoding this reader does not decode itself."""


@dataclass(frozen=True)
class _WavLayout:
    format_code: int
    channels: int
    sample_rate_hz: int
    bits: int
    block_align: int
    data_offset: int
    frames: int


def _read_wav_layout(path: Path, handle: BinaryIO, file_size: int) -> tuple[_WavLayout, list[str]]:
    header = handle.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise AudioError(f"{path}: truncated or corrupt WAV header")
    fmt: tuple[int, int, int, int, int] | None = None
    warnings: list[str] = []
    while True:
        chunk_header = handle.read(8)
        if len(chunk_header) < 8:
            raise AudioError(f"{path}: truncated WAV file: no data chunk found")
        chunk_id, chunk_size = struct.unpack("<4sI", chunk_header)
        if chunk_id == b"fmt ":
            body = handle.read(chunk_size)
            if len(body) < 16 or chunk_size < 16:
                raise AudioError(f"{path}: truncated WAV fmt chunk")
            code, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", body[:16])
            if code == _WAVE_FORMAT_EXTENSIBLE:
                if len(body) < 26:
                    raise AudioError(f"{path}: truncated WAVE_FORMAT_EXTENSIBLE fmt chunk")
                code = struct.unpack("<H", body[24:26])[0]
            fmt = (code, channels, rate, block_align, bits)
            if chunk_size % 2:
                handle.read(1)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioError(f"{path}: WAV data chunk comes before its fmt chunk")
            code, channels, rate, block_align, bits = fmt
            if channels == 0:
                raise AudioError(f"{path}: WAV header says 0 channels")
            _check_rate(path, rate)
            supported = {_WAVE_FORMAT_PCM: (8, 16, 24, 32), _WAVE_FORMAT_IEEE_FLOAT: (32, 64)}
            if bits not in supported.get(code, ()):
                raise _UnsupportedWavEncoding(
                    f"{path}: unsupported WAV encoding (format code {code:#06x}, {bits} bits); "
                    "PCM 8/16/24/32-bit and float 32/64-bit are supported"
                )
            if block_align != channels * bits // 8:
                raise AudioError(f"{path}: corrupt WAV header: block align {block_align} for {channels} x {bits} bits")
            offset = handle.tell()
            available = file_size - offset
            size = chunk_size
            if size > available:
                if size != 0xFFFFFFFF:
                    warnings.append(
                        f"truncated: header declares {size // block_align} frames, "
                        f"file holds {available // block_align}"
                    )
                size = available
            layout = _WavLayout(code, channels, rate, bits, block_align, offset, size // block_align)
            return layout, warnings
        else:
            skipped = chunk_size + (chunk_size % 2)
            if handle.seek(skipped, os.SEEK_CUR) > file_size:
                raise AudioError(f"{path}: truncated WAV file: no data chunk found")


def _decode_pcm(raw: bytes, layout: _WavLayout) -> FloatArray:
    bits, channels = layout.bits, layout.channels
    if layout.format_code == _WAVE_FORMAT_IEEE_FLOAT:
        data = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float32)
    elif bits == 8:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif bits == 16:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif bits == 24:
        triplets = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = triplets[:, 0] | (triplets[:, 1] << 8) | (triplets[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        data = ints.astype(np.float32) / float(1 << 23)
    else:
        data = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    return data.reshape(-1, channels)


def _open_wav(path: Path, file_size: int) -> AudioFile:
    with path.open("rb") as handle:
        layout, warnings = _read_wav_layout(path, handle, file_size)

    def reader(block_frames: int) -> Iterator[FloatArray]:
        with path.open("rb") as handle:
            handle.seek(layout.data_offset)
            remaining = layout.frames
            while remaining > 0:
                n = min(block_frames, remaining)
                raw = handle.read(n * layout.block_align)
                got = len(raw) // layout.block_align
                if got == 0:
                    raise AudioError(f"{path}: file shrank while it was being read")
                remaining -= got
                yield _decode_pcm(raw[: got * layout.block_align], layout)

    name = "WAV float" if layout.format_code == _WAVE_FORMAT_IEEE_FLOAT else "WAV PCM"
    return AudioFile(
        path,
        layout.sample_rate_hz,
        layout.channels,
        layout.frames,
        f"{name} {layout.bits}-bit",
        warnings,
        reader,
    )


@contextlib.contextmanager
def _counting_decoder_noise(noise: list[str]) -> Iterator[None]:
    """Capture what C libraries write to stderr (file descriptor 2) meanwhile: decoder complaints are
    appended to `noise`, anything else is passed on to stderr."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to capture
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if _DECODER_NOISE.search(line):
                    noise.append(line.strip())
                elif line:
                    print(line, file=sys.stderr)


def _noise_warning(noise: list[str]) -> str:
    return (
        f"the decoder reported {len(noise)} damaged frame(s) (first: {noise[0][:120]}); "
        "the audio there may be silence or noise"
    )


def _open_with_soundfile(path: Path) -> AudioFile:
    try:
        import soundfile
    except ImportError as exc:
        raise ExtraMissingError("soundfile", "formats", f"{path}: reading non-WAV audio") from exc
    noise: list[str] = []
    try:
        with _counting_decoder_noise(noise), soundfile.SoundFile(str(path)) as probe:
            rate, channels, frames = probe.samplerate, probe.channels, probe.frames
            format_name = f"{probe.format} {probe.subtype}"
    except (RuntimeError, soundfile.LibsndfileError, TypeError) as exc:
        raise AudioError(f"{path}: not a readable audio file ({exc})") from exc
    if channels == 0:
        raise AudioError(f"{path}: file has 0 channels")
    _check_rate(path, rate)
    warnings: list[str] = []

    def decoded() -> Iterator[FloatArray]:
        """The file in DECODE_FRAMES blocks, read in the same way every time."""
        noise.clear()
        try:
            with soundfile.SoundFile(str(path)) as handle:
                while True:
                    with _counting_decoder_noise(noise):
                        block = handle.read(DECODE_FRAMES, dtype="float32", always_2d=True)
                    if block.shape[0] == 0:
                        break
                    yield block
        except (RuntimeError, soundfile.LibsndfileError) as exc:
            raise AudioError(f"{path}: decoding failed ({exc})") from exc
        if noise and not any(w.startswith("the decoder reported") for w in warnings):
            warnings.append(_noise_warning(noise))

    def reader(block_frames: int) -> Iterator[FloatArray]:
        """Blocks of `block_frames` cut from the fixed-size decoded blocks."""
        pending: list[FloatArray] = []
        held = 0
        for block in decoded():
            pending.append(block)
            held += block.shape[0]
            if held >= block_frames:
                joined = np.concatenate(pending)
                whole = (held // block_frames) * block_frames
                for start in range(0, whole, block_frames):
                    yield joined[start : start + block_frames]
                pending, held = [joined[whole:]], held - whole
        if held:
            yield np.concatenate(pending)

    return AudioFile(path, rate, channels, frames, format_name, warnings, reader)


def _is_compressed_audio(magic: bytes) -> bool:
    """FLAC, Ogg (Vorbis, Opus), MP3 (ID3 tag or an MPEG frame sync), AIFF, CAF, AU, WavPack."""
    if magic.startswith((b"fLaC", b"OggS", b"ID3", b"FORM", b"caff", b".snd", b"wvpk")):
        return True
    return len(magic) >= 2 and magic[0] == 0xFF and magic[1] & 0xE0 == 0xE0


def open_audio(path: str | os.PathLike[str]) -> AudioFile:
    """Open an audio file after checking its header; raises `AudioError` with the reason."""
    file_path = Path(path)
    if not file_path.exists():
        raise AudioError(f"{file_path}: no such file")
    if file_path.is_dir():
        raise AudioError(f"{file_path}: is a directory")
    if not file_path.is_file():  # a FIFO, socket or device: its size says nothing, and it cannot be replayed
        raise AudioError(f"{file_path}: not a regular file (a named pipe, socket or device); give a recorded file")
    file_size = file_path.stat().st_size
    if file_size == 0:
        raise AudioError(f"{file_path}: empty file (0 bytes)")
    with file_path.open("rb") as handle:
        magic = handle.read(12)
    if magic[:4] == b"RIFF":
        try:
            audio = _open_wav(file_path, file_size)
        except _UnsupportedWavEncoding as exc:
            # Compressed WAV (ADPCM, MP3-in-WAV, ...) is left to libsndfile when it is installed.
            try:
                audio = _open_with_soundfile(file_path)
            except ExtraMissingError:
                raise AudioError(f"{exc} (install the 'formats' extra to read it)") from exc
    elif magic[:4] in (b"RIFX", b"RF64"):
        raise AudioError(f"{file_path}: {magic[:4].decode()} WAV variants are not supported")
    elif _is_compressed_audio(magic):
        audio = _open_with_soundfile(file_path)  # names the 'formats' extra when soundfile is missing
    else:
        try:  # libsndfile reads a few more headerless-looking formats; without it this is no audio
            audio = _open_with_soundfile(file_path)
        except ExtraMissingError:
            raise AudioError(
                f"{file_path}: not a WAV file (no RIFF header) and not FLAC, Ogg, MP3 or AIFF either"
            ) from None
    if audio.frames == 0:
        raise AudioError(f"{file_path}: contains no audio samples")
    return audio


def find_audio_files(path: str | os.PathLike[str]) -> list[Path]:
    """The audio files under a directory (recursive, sorted), or the path itself for a file."""
    root = Path(path)
    if root.is_dir():
        return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    return [root]


def write_wav(path: str | os.PathLike[str], samples: npt.ArrayLike, sample_rate_hz: int) -> None:
    """Write mono or (frames, channels) float samples as 16-bit PCM WAV."""
    data = np.asarray(samples, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, None]
    pcm = (np.clip(data, -1.0, 1.0 - 1.0 / 32768.0) * 32768.0).round().astype("<i2")
    channels = data.shape[1]
    payload = pcm.tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(payload),
        b"WAVE",
        b"fmt ",
        16,
        _WAVE_FORMAT_PCM,
        channels,
        sample_rate_hz,
        sample_rate_hz * channels * 2,
        channels * 2,
        16,
        b"data",
        len(payload),
    )
    Path(path).write_bytes(header + payload)
