"""GPIO for the edge tests: gpiozero's mock pins, installed as the default pin factory for the test
and the previous factory restored afterwards (gpiozero's own test habit), and each pin's timeline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def pins() -> Iterator[Any]:
    """A fresh MockFactory as gpiozero's pin factory for one test."""
    pytest.importorskip("gpiozero")
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = previous


def pin_timeline(pins: Any, number: int, created: float) -> list[tuple[float, bool]]:
    """(monotonic time, state) of each state of a mock pin, which records every state with the time
    since the previous change; `created` is when the pin was made (its first, initial state)."""
    out, t = [], created
    for state in pins.pin(number).states:
        t += state.timestamp
        out.append((t, bool(state.state)))
    return out


@pytest.fixture(scope="session")
def clip_store_config(tmp_path_factory: pytest.TempPathFactory, tiny_model: Any) -> Any:
    """A site's clip store and event log, written by the real `scream listen` (three events)."""
    from tests.helpers import make_clip_store

    return make_clip_store(tmp_path_factory.mktemp("site"), tiny_model)


@pytest.fixture
def clip_store(clip_store_config: Any, tmp_path: Any) -> Any:
    """A private copy of that store (clips, event log, config pointing at the copy) a test may change."""
    from tests.helpers import copy_clip_store

    return copy_clip_store(clip_store_config, tmp_path / "state", tmp_path / "site.toml")
