"""The edge on the other supported stack: numpy 1.x with tflite-runtime 2.14 (CPython 3.11 only).

`make test` builds that stack in .venv-compat (numpy<2, tflite-runtime, this package without its
dependencies), as a Pi that has only tflite-runtime would run it. The demo scene goes through the
edge pipeline there and here (numpy 2 and LiteRT); features, scores and alarms must agree.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge.cli import DEFAULT_MODEL_NAME
from tests.compat_probe import run, verify
from tests.helpers import write_stand_in_head

ROOT = Path(__file__).resolve().parents[2]
COMPAT_PYTHON = Path(os.environ.get("SCREAM_COMPAT_PYTHON", ROOT / ".venv-compat" / "bin" / "python"))
MODELS = {"tiny": None, "bundled": ROOT / "models" / DEFAULT_MODEL_NAME}

pytestmark = pytest.mark.skipif(
    not COMPAT_PYTHON.exists(),
    reason=f"no numpy 1 + tflite-runtime environment at {COMPAT_PYTHON}: `make install-compat` (CPython 3.11)",
)


@pytest.mark.parametrize("which", sorted(MODELS))
def test_numpy1_and_tflite_runtime_give_the_same_features_scores_and_alarms(which: str, tiny_model: Path) -> None:
    model = MODELS[which] or tiny_model
    probe = subprocess.run(
        [str(COMPAT_PYTHON), str(ROOT / "tests" / "compat_probe.py"), str(model)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    there = json.loads(probe.stdout)
    here = run(str(model))
    assert there["numpy"].startswith("1."), there["numpy"]
    assert there["runtime"] == "tflite_runtime.interpreter"
    assert here["runtime"] == "ai_edge_litert.interpreter" and np.__version__.startswith("2.")

    np.testing.assert_allclose(np.array(there["features"]), np.array(here["features"]), atol=1e-4)
    for rate in ("16000", "48000"):
        ours, theirs = np.array(here[rate]["scores"]), np.array(there[rate]["scores"])
        assert ours.shape == theirs.shape and ours.size > 50
        # tflite-runtime's int8 kernels can round differently from LiteRT's XNNPACK ones: one output
        # step (1/256) per network, two for an ensemble's average; a few steps at most.
        assert np.max(np.abs(ours - theirs)) <= 3 / 256
        assert there[rate]["alarms_s"] == pytest.approx(here[rate]["alarms_s"])


def test_a_verifier_head_reads_its_tensor_under_tflite_runtime_too(stand_in_verifier: Path, tmp_path: Path) -> None:
    """`[verifier] head` keeps every tensor to read an intermediate one: tflite-runtime 2.14 takes
    the same option, and gives the same verdicts."""
    head = write_stand_in_head(tmp_path / "head.json", stand_in_verifier, [6.0, 0.5, -1.0, 10.0], intercept=3.0)
    probe = subprocess.run(
        [str(COMPAT_PYTHON), str(ROOT / "tests" / "compat_probe.py"), "--verifier", str(stand_in_verifier), str(head)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    there, here = json.loads(probe.stdout), verify(str(stand_in_verifier), str(head))
    assert there["runtime"] == "tflite_runtime.interpreter" and here["runtime"] == "ai_edge_litert.interpreter"
    assert there["scores"] == pytest.approx(here["scores"], abs=1e-5)
    assert max(here["scores"]) - min(here["scores"]) > 0.5
