"""Shared fixtures: synthetic data sets and a tiny model trained by the project's own code.

Tests never use the bundled model; they train their own on synthetic audio once per session.
Helpers that tests import live in tests/helpers.py, not here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import make_stand_in_verifier, make_synthetic_dataset, small_recipe

pytest_plugins = ["tests.skipguard"]


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic-data"))


@pytest.fixture(scope="session")
def tiny_training(tmp_path_factory: pytest.TempPathFactory, synthetic_dataset: Path):  # type: ignore[no-untyped-def]
    """Run the real training pipeline, small, on synthetic audio; returns its TrainResult."""
    pytest.importorskip("tensorflow")
    from train.pipeline import train

    out = tmp_path_factory.mktemp("tiny-model") / "tiny"
    config = small_recipe(tmp_path_factory.mktemp("wave-cache"), epochs=6, steps=12)
    return train(synthetic_dataset, out, config=config)


@pytest.fixture(scope="session")
def tiny_model(request: pytest.FixtureRequest) -> Path:
    """The tiny model's .tflite (its sidecar beside it). With SCREAM_TEST_MODEL_CACHE set to a folder
    (`make mutation` sets it, and empties it first), the model trained by the first run is kept there
    and later runs load it instead of training again: each mutant's run is a new pytest session."""
    cache = os.environ.get("SCREAM_TEST_MODEL_CACHE", "")
    cached = Path(cache) / "tiny.tflite"
    if cache and cached.is_file() and cached.with_suffix(".json").is_file():
        return cached
    trained = Path(request.getfixturevalue("tiny_training").model_path)
    if not cache:
        return trained
    cached.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".tflite"):  # the model last: its presence means both are complete
        staged = cached.with_name(f".{os.getpid()}.tiny{suffix}")
        shutil.copyfile(trained.with_suffix(suffix), staged)
        staged.replace(cached.with_suffix(suffix))
    return cached


@pytest.fixture(scope="session")
def stand_in_verifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YAMNet-shaped second stage whose "Screaming" follows a window's loudness (tests/helpers.py)."""
    pytest.importorskip("tensorflow")
    return make_stand_in_verifier(tmp_path_factory.mktemp("verifier"))


@pytest.fixture
def model_copy(tiny_model: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model and its sidecar that a test may damage."""
    dst = tmp_path / tiny_model.name
    dst.write_bytes(tiny_model.read_bytes())
    dst.with_suffix(".json").write_bytes(tiny_model.with_suffix(".json").read_bytes())
    return dst
