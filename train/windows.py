"""Log-mel windows from clips: random augmented ones for training, the edge's own for evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.features import FeatureParams
from edge.pipeline import StreamingScorer

FloatArray = npt.NDArray[np.float32]
ACTIVE_BELOW_PEAK_DB = 12.0


def window_samples(features: FeatureParams, window_frames: int) -> int:
    return (window_frames - 1) * features.hop_samples + features.window_samples


def active_span(samples: FloatArray, features: FeatureParams) -> tuple[int, int]:
    """First and last sample of the loud part: 10 ms blocks within 12 dB of the loudest block."""
    hop = features.hop_samples
    n_blocks = max(samples.size // hop, 1)
    blocks = np.resize(samples, n_blocks * hop).reshape(n_blocks, hop) if samples.size >= hop else samples[None, :]
    level_db = 10 * np.log10(np.mean(np.square(blocks, dtype=np.float64), axis=1) + 1e-10)
    active = np.flatnonzero(level_db >= level_db.max() - ACTIVE_BELOW_PEAK_DB)
    return int(active[0] * hop), int(min((active[-1] + 1) * hop, samples.size))


def cut_window(samples: FloatArray, start: int, length: int) -> FloatArray:
    """samples[start:start+length], with zeros where the window runs past either end."""
    out = np.zeros(length, dtype=np.float32)
    lo, hi = max(start, 0), min(start + length, samples.size)
    if hi > lo:
        out[lo - start : hi - start] = samples[lo:hi]
    return out


def random_window(
    samples: FloatArray,
    *,
    is_scream: bool,
    length: int,
    features: FeatureParams,
    rng: np.random.Generator,
    onset_probability: float = 0.0,
) -> FloatArray:
    """A training excerpt: for a scream, one whose centre falls in the loud part (time shift), or
    with `onset_probability` one that ends 0.25-0.6 s after the scream's onset, as the live detector
    sees a scream that has just begun."""
    if is_scream:
        first, last = active_span(samples, features)
        if rng.random() < onset_probability:
            rate = features.sample_rate_hz
            start = first + int(rng.uniform(0.25, 0.6) * rate) - length
        else:
            centre = int(rng.integers(first, max(last, first + 1)))
            start = centre - length // 2 + int(rng.integers(-length // 4, length // 4 + 1))
    elif samples.size >= length:
        start = int(rng.integers(0, samples.size - length + 1))
    else:
        start = -int(rng.integers(0, length - samples.size + 1))
    return cut_window(samples, start, length)


class _Collector:
    """Stands in for the classifier to capture exactly the windows the edge would score."""

    def __init__(self, input_shape: tuple[int, int]) -> None:
        self.input_shape = input_shape
        self.windows: list[FloatArray] = []

    def score(self, window: FloatArray) -> float:
        self.windows.append(window.copy())
        return 0.0


@dataclass
class ClipWindows:
    windows: FloatArray  # (n, frames, mels)
    starts_s: npt.NDArray[np.float64]
    is_active: npt.NDArray[np.bool_]  # overlaps the loud part enough to be labelled by the clip


def edge_windows(samples: FloatArray, features: FeatureParams, *, window_frames: int, hop_frames: int) -> ClipWindows:
    """The windows `scream detect` scores for this clip (same streaming path, same padding)."""
    collector = _Collector((window_frames, features.mel_bands))
    scorer = StreamingScorer(collector, features, hop_frames=hop_frames, source_rate_hz=features.sample_rate_hz)
    scorer.push(samples)
    scorer.flush()
    n = len(collector.windows)
    starts = np.array([scorer.window_bounds(i)[0] for i in range(n)])
    first, last = active_span(samples, features) if samples.size else (0, 0)
    rate = features.sample_rate_hz
    span_s = (last - first) / rate
    win_s = window_samples(features, window_frames) / rate
    overlap = np.minimum(starts + win_s, last / rate) - np.maximum(starts, first / rate)
    is_active = overlap >= min(0.3, 0.8 * span_s)
    windows = np.stack(collector.windows) if n else np.zeros((0, window_frames, features.mel_bands), np.float32)
    return ClipWindows(windows, starts, is_active)
