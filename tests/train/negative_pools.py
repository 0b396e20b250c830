"""One check for the pools of made-up negatives the training batches can draw from (procedural
sounds, spoken words): the tests of each pool call it with the module that makes its sounds."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest


def assert_pool_drawn_only_when_asked(monkeypatch: pytest.MonkeyPatch, maker: ModuleType, name: str, size: int) -> None:
    """`AugmentedBatches.<name>` is filled from `maker.sound` only when `TrainConfig.<name>_fraction`
    is set: off, nothing is made and the batches draw recorded clips; at 1.0 every negative excerpt comes
    from a pool of `<name>_pool` sounds, which `pipeline.<name>_pool` makes again from the run's seed."""
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
    monkeypatch.setattr(maker, "sound", lambda *a: pytest.fail("made although off"))
    batches = pipeline.AugmentedBatches(split, FeatureParams(), off, AugmentParams())
    assert getattr(batches, name) == []
    before = batches.batch(0)
    monkeypatch.undo()
    monkeypatch.setattr(pipeline, "random_window", spy)
    drawn.clear()
    on = pipeline.TrainConfig(batch_size=16, noise_only_fraction=0.0, **{f"{name}_fraction": 1.0, f"{name}_pool": size})
    batches = pipeline.AugmentedBatches(split, FeatureParams(), on, AugmentParams())
    made = getattr(batches, name)
    assert len(made) == size
    windows, labels = batches.batch(0)
    pool = {id(x) for x in made}
    negatives = drawn[8:]  # the first half of a batch is screams
    assert negatives and all(source in pool for source in negatives)
    assert windows.shape[0] == 16 and labels[:8].all() and not labels[8:].any()
    assert not np.array_equal(windows[8:], before[0][8:])
    # The pool is seeded by the run's seed: the same recipe, the same sounds.
    again = getattr(pipeline, f"{name}_pool")(16000, on)
    assert all(np.array_equal(a, b) for a, b in zip(again, made, strict=True))
