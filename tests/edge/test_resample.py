from __future__ import annotations

from math import gcd

import numpy as np
import pytest

from edge.resample import StreamingResampler, resample

RATE_PAIRS = [(44100, 16000), (48000, 16000), (8000, 16000), (22050, 16000), (11127, 16000), (96000, 16000)]


@pytest.mark.parametrize("rate_in, rate_out", RATE_PAIRS)
def test_matches_scipy_resample_poly(rate_in: int, rate_out: int) -> None:
    signal_mod = pytest.importorskip("scipy.signal")
    x = np.random.default_rng(0).standard_normal(rate_in // 4 + 13).astype(np.float32)
    g = gcd(rate_in, rate_out)
    reference = signal_mod.resample_poly(x.astype(np.float64), rate_out // g, rate_in // g)
    ours = resample(x, rate_in, rate_out)
    assert ours.shape == reference.shape
    # Same filter; we accumulate in float32 where scipy uses float64.
    np.testing.assert_allclose(ours, reference, atol=2e-6)


@pytest.mark.parametrize("rate_in, rate_out", RATE_PAIRS[:3])
def test_chunked_equals_whole(rate_in: int, rate_out: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(rate_in // 2).astype(np.float32)
    whole = resample(x, rate_in, rate_out)
    resampler = StreamingResampler(rate_in, rate_out)
    parts, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, 2500))
        parts.append(resampler.push(x[i : i + n]))
        i += n
    parts.append(resampler.flush())
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def _tone_level_db(x: np.ndarray, rate: int, freq: float) -> float:
    t = np.arange(x.size) / rate
    amplitude = 2 * np.abs(np.mean(x * np.exp(-2j * np.pi * freq * t)))
    return 20 * np.log10(amplitude + 1e-12)


def test_anti_aliasing_removes_content_above_new_nyquist() -> None:
    rate_in = 44100
    t = np.arange(rate_in) / rate_in
    alias_source = 0.5 * np.sin(2 * np.pi * 10000 * t)  # would fold to 6 kHz at 16 kHz
    kept = 0.5 * np.sin(2 * np.pi * 1000 * t)
    y = resample((alias_source + kept).astype(np.float32), rate_in, 16000)[2000:-2000]
    assert abs(_tone_level_db(y, 16000, 1000) - 20 * np.log10(0.5)) < 0.1
    assert _tone_level_db(y, 16000, 6000) < 20 * np.log10(0.5) - 50


def test_identity_and_invalid_rates() -> None:
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)
    with pytest.raises(ValueError):
        StreamingResampler(0, 16000)
