"""Procedural hard negatives: seeded, deterministic, every family real sound, and wired into the
training batches only when asked for."""

from __future__ import annotations

import numpy as np
import pytest

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
    import train.pipeline as pipeline
    from edge.features import FeatureParams
    from train.augment import AugmentParams
    from train.data import Clip

    clips = [
        Clip(path=pipeline.Path(f"/d/{label}{i}.wav"), label=label, group=f"{label}{i}")
        for label in ("scream", "non_scream")
        for i in range(4)
    ]
    waves = [np.full(20000, 0.01 * (i + 1), np.float32) for i in range(len(clips))]
    split = pipeline.PreparedSplit(clips, waves)
    drawn: list[int] = []
    real_window = pipeline.random_window

    def spy(source: np.ndarray, **kwargs: object) -> np.ndarray:
        drawn.append(id(source))
        return real_window(source, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "random_window", spy)
    off = pipeline.TrainConfig(batch_size=16, noise_only_fraction=0.0)
    monkeypatch.setattr(procedural, "sound", lambda *a: pytest.fail("drawn although off"))
    batches = pipeline.AugmentedBatches(split, FeatureParams(), off, AugmentParams())
    assert batches.procedural == []
    batches.batch(0)
    monkeypatch.undo()
    monkeypatch.setattr(pipeline, "random_window", spy)
    drawn.clear()
    on = pipeline.TrainConfig(batch_size=16, noise_only_fraction=0.0, procedural_fraction=1.0, procedural_pool=22)
    batches = pipeline.AugmentedBatches(split, FeatureParams(), on, AugmentParams())
    assert len(batches.procedural) == 22
    windows, labels = batches.batch(0)
    pool = {id(x) for x in batches.procedural}
    negatives = drawn[8:]  # the first half of a batch is screams
    assert negatives and all(source in pool for source in negatives)
    assert windows.shape[0] == 16 and labels[:8].all() and not labels[8:].any()
    # The pool is seeded by the run's seed: the same recipe, the same sounds.
    again = pipeline.procedural_pool(16000, on)
    assert all(np.array_equal(a, b) for a, b in zip(again, batches.procedural, strict=True))
