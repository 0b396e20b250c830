"""The feature contract: one log-mel definition for training and for the Pi.

`FeatureParams` holds every setting, with units in the field names; its `contract_hash` goes into
each model's sidecar so the edge refuses a model trained on other features. `LogMelExtractor`
computes features for a whole signal; `StreamingLogMel` computes the same frames from chunks of
any size, computing only the frames that the new samples complete.

Framing follows `tf.signal.stft` (no centring, no padding; the window sits at the start of each
FFT frame) and the filterbank copies `tf.signal.linear_to_mel_weight_matrix` (HTK mel scale,
triangles linear in mel), so TensorFlow can serve as a test reference.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import ModelError

FloatArray = npt.NDArray[np.float32]

# Bump when the arithmetic changes in a way the parameters do not capture.
FEATURE_ALGORITHM_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class FeatureParams:
    """Every setting of the log-mel front end. Never lives in the runtime config: it is the model's."""

    sample_rate_hz: int = 16000
    window_ms: float = 25.0
    hop_ms: float = 10.0
    fft_size: int = 512
    mel_bands: int = 40
    fmin_hz: float = 60.0
    fmax_hz: float = 7600.0
    log_offset: float = 1e-6

    def __post_init__(self) -> None:
        problems = []
        if not 4000 <= self.sample_rate_hz <= 192000:
            problems.append(f"sample_rate_hz={self.sample_rate_hz} is outside 4000..192000")
        if self.window_samples < 16:
            problems.append(f"window_ms={self.window_ms} gives fewer than 16 samples")
        if self.fft_size < self.window_samples:
            problems.append(f"fft_size={self.fft_size} is smaller than the window ({self.window_samples} samples)")
        if not 0 < self.hop_samples <= self.window_samples:
            problems.append(f"hop_ms={self.hop_ms} must give 1..window samples")
        if not 0 <= self.fmin_hz < self.fmax_hz <= self.sample_rate_hz / 2:
            problems.append(f"band edges {self.fmin_hz}..{self.fmax_hz} Hz must satisfy 0 <= fmin < fmax <= Nyquist")
        if self.mel_bands < 1:
            problems.append(f"mel_bands={self.mel_bands} must be positive")
        if not self.log_offset > 0:
            problems.append(f"log_offset={self.log_offset} must be positive")
        if problems:
            raise ValueError("invalid feature parameters: " + "; ".join(problems))

    @property
    def window_samples(self) -> int:
        return round(self.sample_rate_hz * self.window_ms / 1000.0)

    @property
    def hop_samples(self) -> int:
        return round(self.sample_rate_hz * self.hop_ms / 1000.0)

    def frame_count(self, n_samples: int) -> int:
        """Frames that `n_samples` samples hold completely (no padding)."""
        if n_samples < self.window_samples:
            return 0
        return 1 + (n_samples - self.window_samples) // self.hop_samples

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureParams:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"unknown feature parameters: {', '.join(unknown)}")
        missing = sorted(known - set(data))
        if missing:
            raise ModelError(f"feature parameters missing: {', '.join(missing)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ModelError(str(exc)) from exc

    @property
    def contract_hash(self) -> str:
        """Stable across Python versions and runs: sha256 of the canonical JSON of the settings."""
        payload = {"algorithm": FEATURE_ALGORITHM_VERSION, **self.to_dict()}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def hz_to_mel(freq_hz: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """HTK mel scale, as tf.signal uses."""
    return 1127.0 * np.log1p(np.asarray(freq_hz, dtype=np.float64) / 700.0)


def mel_filterbank(params: FeatureParams) -> FloatArray:
    """Weights of shape (fft_size // 2 + 1, mel_bands), built as tf.signal builds them."""
    n_bins = params.fft_size // 2 + 1
    linear_hz = np.linspace(0.0, params.sample_rate_hz / 2.0, n_bins)[1:]  # DC bin stays zero
    bin_mel = hz_to_mel(linear_hz)[:, None]
    edges = np.linspace(hz_to_mel(params.fmin_hz), hz_to_mel(params.fmax_hz), params.mel_bands + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel - lower) / (center - lower)
    falling = (upper - bin_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return np.vstack([np.zeros((1, params.mel_bands)), weights]).astype(np.float32)


class LogMelExtractor:
    """Batch log-mel: `compute(samples)` returns (frames, mel_bands) float32."""

    def __init__(self, params: FeatureParams) -> None:
        self.params = params

    @cached_property
    def _window(self) -> FloatArray:
        n = self.params.window_samples
        # Periodic Hann, as tf.signal.hann_window and librosa's 'hann' use.
        return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)

    @cached_property
    def _filterbank(self) -> FloatArray:
        # One row per real and per imaginary FFT output: the squared spectrum, viewed as float32
        # pairs, meets the filterbank in a single matrix product.
        return np.repeat(mel_filterbank(self.params), 2, axis=0)

    def compute(self, samples: npt.ArrayLike) -> FloatArray:
        """Log-mel frames of a mono float signal at `params.sample_rate_hz`."""
        signal = np.asarray(samples, dtype=np.float32)
        if signal.ndim != 1:
            raise ValueError(f"expected mono samples (1-D), got shape {signal.shape}")
        n_frames = self.params.frame_count(signal.size)
        if n_frames == 0:
            return np.zeros((0, self.params.mel_bands), dtype=np.float32)
        win, hop = self.params.window_samples, self.params.hop_samples
        frames = np.lib.stride_tricks.as_strided(
            signal,
            shape=(n_frames, win),
            strides=(signal.strides[0] * hop, signal.strides[0]),
            writeable=False,
        )
        # Blocks keep the working set in cache (a whole-signal FFT loses on long input), and a reused
        # zero-padded buffer saves the copy rfft(n=fft_size) would make.
        out = np.empty((n_frames, self.params.mel_bands), dtype=np.float32)
        block = 256
        buffer = np.zeros((min(block, n_frames), self.params.fft_size), dtype=np.float32)
        offset = np.float32(self.params.log_offset)
        for start in range(0, n_frames, block):
            stop = min(start + block, n_frames)
            rows = buffer[: stop - start]
            np.multiply(frames[start:stop], self._window, out=rows[:, :win])
            spectrum = np.fft.rfft(rows)
            if spectrum.dtype != np.complex64:  # numpy 1.x computes every FFT in double precision
                spectrum = spectrum.astype(np.complex64)
            parts = spectrum.view(np.float32)  # re, im, re, im, ...
            np.square(parts, out=parts)
            np.log(parts @ self._filterbank + offset, out=out[start:stop])
        return out


@functools.lru_cache(maxsize=8)
def full_scale_reference(params: FeatureParams) -> float:
    """Mel power of a full-scale 1 kHz sine: the 0 dBFS reference of `window_level_dbfs`."""
    t = np.arange(params.sample_rate_hz) / params.sample_rate_hz
    frames = LogMelExtractor(params).compute(np.sin(2 * np.pi * 1000.0 * t))
    return float(np.mean(np.sum(np.exp(frames) - params.log_offset, axis=1)))


def window_level_dbfs(window: FloatArray, params: FeatureParams, reference: float) -> float:
    """Loudness of a log-mel window in dB relative to a full-scale sine (band-limited to the mel range)."""
    power = float(np.mean(np.sum(np.exp(window) - params.log_offset, axis=1)))
    return 10.0 * float(np.log10(max(power, 1e-20) / reference))


class StreamingLogMel:
    """Incremental log-mel: `push(chunk)` returns only the frames the new samples complete.

    Concatenating every result equals `LogMelExtractor.compute` on the whole signal.
    """

    def __init__(self, params: FeatureParams) -> None:
        self.params = params
        self._batch = LogMelExtractor(params)
        self._pending = np.zeros(0, dtype=np.float32)
        self.frames_emitted = 0

    def push(self, chunk: npt.ArrayLike) -> FloatArray:
        samples = np.asarray(chunk, dtype=np.float32).reshape(-1)
        buffered = np.concatenate([self._pending, samples]) if self._pending.size else samples
        frames = self._batch.compute(buffered)
        consumed = frames.shape[0] * self.params.hop_samples
        self._pending = buffered[consumed:].copy()
        self.frames_emitted += frames.shape[0]
        return frames

    def reset(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)
        self.frames_emitted = 0
