"""Shared fixtures: synthetic data sets and a tiny model trained by the project's own code.

Tests never use the bundled model; they train their own on synthetic audio once per session.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge import synth
from edge.audio import write_wav

RATE = 16000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def export_random_windows(model: Any, out: Path, windows: np.ndarray, **kwargs: Any) -> dict[str, Any]:
    """Export a (usually untrained) Keras model through train/'s export with the edge's feature
    contract, 96-frame windows at a 25-frame hop, `windows` as representative and check set."""
    from edge.features import FeatureParams
    from train.export import export_model

    return export_model(
        model,
        out,
        features=FeatureParams(),
        window_frames=96,
        hop_frames=25,
        representative=windows,
        check_windows=windows,
        **kwargs,
    )


def wait_until(predicate: Callable[[], object], timeout_s: float = 30.0, poll_s: float = 0.05) -> bool:
    """Poll until the predicate holds or the time is up; returns whether it held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return False


def make_synthetic_dataset(
    root: Path, *, per_class: int = 24, seed: int = 0, rates: tuple[int, ...] = (16000,)
) -> Path:
    """A folder data set: scream/ holds scream-like sounds, non_scream/ room tone, babble, beeps."""
    rng = np.random.default_rng(seed)
    for label in ("scream", "non_scream"):
        (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(per_class):
        rate = rates[i % len(rates)]
        duration = float(rng.uniform(1.0, 2.0))
        background = synth.room_tone(duration, rate, rng, level=float(rng.uniform(0.001, 0.01)))
        scream = synth.scream_like(duration * 0.8, rate, rng, level=float(rng.uniform(0.2, 0.8)))
        clip = background.copy()
        clip[: scream.size] += scream
        write_wav(root / "scream" / f"s{i:03d}.wav", clip, rate)
        kind = i % 3
        if kind == 0:
            other = synth.speech_like(duration, rate, rng, level=float(rng.uniform(0.02, 0.2)))
        elif kind == 1:
            other = synth.alarm_like(duration, rate, rng, level=float(rng.uniform(0.05, 0.3)))
        else:
            other = np.zeros_like(background)
        write_wav(root / "non_scream" / f"n{i:03d}.wav", background + other[: background.size], rate)
    return root


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic-data"))


@pytest.fixture(scope="session")
def tiny_training(tmp_path_factory: pytest.TempPathFactory, synthetic_dataset: Path):  # type: ignore[no-untyped-def]
    """Run the real training pipeline, small, on synthetic audio; returns its TrainResult."""
    pytest.importorskip("tensorflow")
    from train.pipeline import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny-model") / "tiny"
    config = TrainConfig(
        epochs=6,
        steps_per_epoch=12,
        batch_size=32,
        width=8,
        members=1,
        early_stopping_patience=6,
        cache_dir=str(tmp_path_factory.mktemp("wave-cache")),
        verbose=0,
    )
    return train(synthetic_dataset, out, config=config)


@pytest.fixture(scope="session")
def tiny_model(tiny_training) -> Path:  # type: ignore[no-untyped-def]
    return Path(tiny_training.model_path)


@pytest.fixture
def model_copy(tiny_model: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model and its sidecar that a test may damage."""
    dst = tmp_path / tiny_model.name
    dst.write_bytes(tiny_model.read_bytes())
    dst.with_suffix(".json").write_bytes(tiny_model.with_suffix(".json").read_bytes())
    return dst
