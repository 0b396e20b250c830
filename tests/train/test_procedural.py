"""Procedural hard negatives: seeded, deterministic, every family real sound, and wired into the
training batches only when asked for."""

from __future__ import annotations

import numpy as np
import pytest

from tests.train.negative_pools import assert_pool_drawn_only_when_asked
from train import procedural


@pytest.mark.parametrize("family", list(procedural.FAMILIES))
def test_each_family_is_seeded_finite_and_audible(family: str) -> None:
    sounds = [procedural.sound(family, 16000, np.random.default_rng([4, k])) for k in range(4)]
    again = [procedural.sound(family, 16000, np.random.default_rng([4, k])) for k in range(4)]
    for a, b in zip(sounds, again, strict=True):
        np.testing.assert_array_equal(a, b)  # the same seed, the same samples
        assert a.dtype == np.float32 and np.all(np.isfinite(a))
        assert 0.1 * 16000 <= a.size <= 8 * 16000
        peak = float(np.max(np.abs(a)))
        assert 10 ** (-30.5 / 20) <= peak <= 10 ** (-2.9 / 20)  # peaks at -30 to -3 dBFS
        assert float(np.mean(a**2)) > 0  # not silence
    assert len({a.tobytes() for a in sounds}) == 4  # other seeds, other sounds


def test_vocal_families_have_a_voice_below_scream_pitch() -> None:
    """A moan or a sigh is voiced at 90-350 Hz; the spectrum's peak sits far below a scream's
    (700-1400 Hz fundamentals in edge/synth.py's scream_like)."""
    from edge.synth import scream_like

    def peak_hz(x: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
        return float(np.fft.rfftfreq(x.size, 1 / 16000)[np.argmax(spectrum)])

    for k in range(5):
        moan = procedural.moan(16000, np.random.default_rng(k))
        assert 60 <= peak_hz(moan) <= 1000
    scream = scream_like(1.5, 16000, np.random.default_rng(0))
    assert peak_hz(scream) >= 650


def test_unknown_family_is_named() -> None:
    with pytest.raises(ValueError, match="unknown procedural family 'scream'; known: breath, sigh"):
        procedural.sound("scream", 16000, np.random.default_rng(0))


def test_batches_draw_procedural_negatives_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert_pool_drawn_only_when_asked(monkeypatch, procedural, "procedural", 22)
