"""Streaming polyphase resampler (numpy only) for any rational rate change.

The filter is the one `scipy.signal.resample_poly` designs by default (Kaiser window, beta 5,
half length 10 * max(up, down), cutoff at the lower Nyquist), so scipy serves as its test
reference; pushing a signal in chunks and then flushing gives the same output as one call.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def _design_lowpass(up: int, down: int) -> npt.NDArray[np.float64]:
    max_rate = max(up, down)
    half_len = 10 * max_rate
    n_taps = 2 * half_len + 1
    cutoff = 1.0 / max_rate  # relative to the Nyquist of the upsampled rate
    t = np.arange(n_taps) - half_len
    taps = cutoff * np.sinc(cutoff * t) * np.kaiser(n_taps, 5.0)
    taps /= taps.sum()
    return np.asarray(taps * up, dtype=np.float64)


class StreamingResampler:
    """Resamples from `rate_in_hz` to `rate_out_hz`; `push` chunks, then `flush` at the end."""

    def __init__(self, rate_in_hz: int, rate_out_hz: int) -> None:
        if rate_in_hz <= 0 or rate_out_hz <= 0:
            raise ValueError(f"sample rates must be positive, got {rate_in_hz} -> {rate_out_hz}")
        g = math.gcd(rate_in_hz, rate_out_hz)
        self.up, self.down = rate_out_hz // g, rate_in_hz // g
        self.is_identity = self.up == self.down == 1
        taps = _design_lowpass(self.up, self.down) if not self.is_identity else np.ones(1)
        self._half_len = (taps.size - 1) // 2
        self._taps_per_phase = -(-taps.size // self.up)
        padded = np.zeros(self._taps_per_phase * self.up)
        padded[: taps.size] = taps
        # phases[p, j] = taps[p + j * up]; input x[i - j] meets it for output phase p.
        self._phases = padded.reshape(self._taps_per_phase, self.up).T.astype(np.float32).copy()
        self._history = np.zeros(self._taps_per_phase, dtype=np.float32)
        self._history_start = -self._taps_per_phase  # input index of _history[0]
        self._n_in = 0
        self._n_out = 0
        self._flushed = False

    def _outputs_ready(self, n_in: int) -> int:
        """Count of outputs whose newest input index is below n_in."""
        # Output n needs input index floor((n*down + half_len) / up).
        numerator = n_in * self.up - self._half_len - 1
        if numerator < 0:
            return 0
        return numerator // self.down + 1

    def _emit(self, n_ready: int) -> FloatArray:
        if n_ready <= self._n_out:
            return np.zeros(0, dtype=np.float32)
        n = np.arange(self._n_out, n_ready, dtype=np.int64)
        m = n * self.down + self._half_len
        phase = m % self.up
        newest = m // self.up - self._history_start
        offsets = np.arange(self._taps_per_phase)
        gathered = self._history[newest[:, None] - offsets[None, :]]
        out = np.asarray(np.einsum("ij,ij->i", gathered, self._phases[phase]), dtype=np.float32)
        self._n_out = n_ready
        # Keep only what the next outputs can still reach.
        next_newest = (n_ready * self.down + self._half_len) // self.up
        keep_from = max(next_newest - self._taps_per_phase + 1, self._history_start)
        drop = keep_from - self._history_start
        if drop > 0:
            self._history = self._history[drop:]
            self._history_start = keep_from
        return out

    def push(self, chunk: npt.ArrayLike) -> FloatArray:
        samples = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if self._flushed:
            raise RuntimeError("push after flush")
        if self.is_identity:
            return samples.copy()
        self._history = np.concatenate([self._history, samples])
        self._n_in += samples.size
        return self._emit(self._outputs_ready(self._n_in))

    def flush(self) -> FloatArray:
        """The remaining outputs, as if zeros followed; total length is ceil(n_in * up / down)."""
        if self._flushed or self.is_identity:
            self._flushed = True
            return np.zeros(0, dtype=np.float32)
        self._flushed = True
        total = -(-self._n_in * self.up // self.down)
        pad = self._taps_per_phase + self._half_len // self.up + 2
        self._history = np.concatenate([self._history, np.zeros(pad, dtype=np.float32)])
        return self._emit(total)

    @property
    def latency_in_samples(self) -> float:
        """Input samples an output waits for beyond its own time (the filter's look-ahead)."""
        return self._half_len / self.up


def resample(samples: npt.ArrayLike, rate_in_hz: int, rate_out_hz: int) -> FloatArray:
    """Whole-signal convenience wrapper around `StreamingResampler`."""
    resampler = StreamingResampler(rate_in_hz, rate_out_hz)
    return np.concatenate([resampler.push(samples), resampler.flush()])
