"""Helpers tests import: free ports, polling, synthetic data sets, exporting untrained models."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge import synth
from edge.audio import write_wav

SYSTEM_PACKAGES = Path(__file__).with_name("system-packages.txt")


def system_packages() -> dict[str, str]:
    """Program -> Debian package, from tests/system-packages.txt."""
    rows = (line.split() for line in SYSTEM_PACKAGES.read_text().splitlines() if line and not line.startswith("#"))
    return {program: package for program, package in rows}


def require_program(name: str) -> str:
    """The path of a program a test needs. Missing, the test fails naming the apt line (it skips
    only with SCREAM_TESTS_ALLOW_SKIP=1, which CI never sets)."""
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.is_file()), None
    )
    if found:
        return found
    message = f"{name} is not installed: sudo apt-get install {system_packages().get(name, name)} (or run .ci/run)"
    if os.environ.get("SCREAM_TESTS_ALLOW_SKIP") == "1":
        pytest.skip(message)
    pytest.fail(message)


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


STAND_IN_CLASSES = ("Speech", "Screaming", "Yell")
STAND_IN_LEVEL_DB = -25.0  # the stand-in verifier's "Screaming" is 0.5 at this window power (dB)


def stand_in_screaming(window: np.ndarray) -> float:
    """What the stand-in verifier's "Screaming" class gives for one window (numpy, for tests to
    compare against): a logistic of the window's power in dB around STAND_IN_LEVEL_DB."""
    power_db = 10 * np.log10(np.mean(window.astype(np.float64) ** 2) + 1e-10)
    return float(1 / (1 + np.exp(-0.5 * (power_db - STAND_IN_LEVEL_DB))))


STAND_IN_FRAME = 256  # the stand-in's embedding averages per-frame features over frames of this many samples


def stand_in_embedding(window: np.ndarray) -> np.ndarray:
    """The stand-in verifier's embedding tensor (numpy, for tests to compare against): per frame of
    STAND_IN_FRAME samples its level (dB / 10), 4 x its zero-crossing rate, 1, and the square root of
    its mean magnitude, averaged over the frames, as YAMNet's global average pooling averages."""
    x = window.astype(np.float64)
    frames = x[: (x.size // STAND_IN_FRAME) * STAND_IN_FRAME].reshape(-1, STAND_IN_FRAME)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    signs = np.sign(frames)
    zcr = np.mean(np.abs(np.diff(signs, axis=1)), axis=1)
    per_frame = np.stack([level / 10, 4 * zcr, np.ones_like(zcr), np.sqrt(np.mean(np.abs(frames), axis=1))], axis=1)
    return np.asarray(per_frame.mean(axis=0), dtype=np.float64)


def make_stand_in_verifier(folder: Path, *, samples: int = 15600, stem: str = "standin") -> Path:
    """A tiny waveform classifier shaped like YAMNet's TF-Lite release (float32 [samples] in, [1, 3]
    class scores out, a class map CSV beside it) whose "Screaming" is `stand_in_screaming`: loud
    windows pass a second stage, quiet ones do not. Like YAMNet it holds an intermediate [1, 4]
    tensor named as YAMNet's embedding (`stand_in_embedding`), which only a head reads (its "Yell"
    is 0.01 x a sigmoid of it, so that the converter keeps it). Built with TensorFlow, converted as a
    TF-Lite float model."""
    import tensorflow as tf

    from train.corpus.teacher import EMBEDDING_TENSOR

    scope, name = EMBEDDING_TENSOR.rsplit("/", 1)
    usable = (samples // STAND_IN_FRAME) * STAND_IN_FRAME

    class StandIn(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([samples], tf.float32)])
        def __call__(self, waveform: Any) -> Any:
            power = tf.reduce_mean(tf.square(waveform)) + 1e-10
            power_db = 10.0 * tf.math.log(power) / tf.math.log(10.0)
            screaming = tf.sigmoid(0.5 * (power_db - STAND_IN_LEVEL_DB))
            frames = tf.reshape(waveform[:usable], [usable // STAND_IN_FRAME, STAND_IN_FRAME])
            level = 10.0 * tf.math.log(tf.reduce_mean(tf.square(frames), axis=1) + 1e-10) / tf.math.log(10.0)
            signs = tf.sign(frames)
            zcr = tf.reduce_mean(tf.abs(signs[:, 1:] - signs[:, :-1]), axis=1)
            magnitude = tf.sqrt(tf.reduce_mean(tf.abs(frames), axis=1))
            per_frame = tf.stack([level / 10.0, 4.0 * zcr, tf.ones_like(zcr), magnitude], axis=1)
            with tf.name_scope(scope):
                embedding = tf.reduce_mean(per_frame, axis=0, keepdims=True, name=name)
            yell = 0.01 * tf.sigmoid(tf.reduce_sum(embedding))
            return tf.reshape(tf.stack([1.0 - screaming, screaming, yell]), [1, 3])

    module = StandIn()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / f"{stem}.tflite"
    model.write_bytes(converter.convert())
    rows = ["index,mid,display_name"] + [f"{i},/m/{i},{name}" for i, name in enumerate(STAND_IN_CLASSES)]
    (folder / f"{stem}_class_map.csv").write_text("\n".join(rows) + "\n")
    return model


def write_stand_in_head(path: Path, model: Path, coef: list[Any], intercept: Any = 0.0, **changes: Any) -> Path:
    """A head file as `scream verifier-head` writes it, on `model`'s embedding tensor (YAMNet's name);
    `changes` replace or add fields (tests of bad heads)."""
    import json

    from edge.classifier import sha256_file
    from edge.verifier import HEAD_FORMAT
    from train.corpus.teacher import EMBEDDING_TENSOR

    head = {"format": HEAD_FORMAT, "tensor": EMBEDDING_TENSOR, "model_sha256": sha256_file(model)}
    head |= {"coef": coef, "intercept": intercept, "fit": {"c": 1.0}} | changes
    path.write_text(json.dumps(head))
    return path


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


def small_recipe(cache_dir: Path | str, *, epochs: int, steps: int, **changes: Any) -> Any:
    """A TrainConfig small enough for a test: batches of 32, one network of width 8, quiet."""
    from train.pipeline import TrainConfig

    base: dict[str, Any] = {"batch_size": 32, "width": 8, "members": 1, "early_stopping_patience": epochs}
    return TrainConfig(**(base | changes), epochs=epochs, steps_per_epoch=steps, cache_dir=str(cache_dir), verbose=0)


def make_clip_store(root: Path, model: Path, *, screams_at_s: tuple[float, ...] = (2.0, 9.0, 16.0)) -> Path:
    """What a site's device holds after an afternoon: the real `scream listen` (a child process,
    file replay) over room tone with loud scream-like sounds, writing its clips and event log under
    `root`/state. Returns the config it ran with (review and labels read the same one)."""
    import subprocess

    from edge.service import listen_argv

    rate = 16000
    rng = np.random.default_rng(11)
    audio = synth.room_tone(max(screams_at_s) + 5.0, rate, rng, level=0.0005)
    for at in screams_at_s:
        scream = synth.scream_like(1.2, rate, rng, level=0.5)
        audio[int(at * rate) : int(at * rate) + scream.size] += scream
    recording = root / "afternoon.wav"
    write_wav(recording, audio, rate)
    state = root / "state"
    config = root / "site.toml"
    config.write_text(
        f'[site]\nname = "hall"\nlocation = "first floor"\n[paths]\nstate_dir = "{state}"\n'
        "[gpio]\nenabled = false\n[model]\nwatch = false\n"
        "[clips]\npre_roll_s = 0.5\npost_roll_s = 0.5\nmin_free_bytes = 0\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = listen_argv(config=config, model=model, source=recording, fast=True)
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return config


def copy_clip_store(config: Path, state: Path, new_config: Path) -> Path:
    """A copy of the state folder `make_clip_store` wrote (clips, event log) at `state`, and of its
    config at `new_config`, pointing at the copy; returns `new_config`."""
    shutil.copytree(config.parent / "state", state)
    new_config.parent.mkdir(parents=True, exist_ok=True)
    new_config.write_text(config.read_text().replace(str(config.parent / "state"), str(state)))
    return new_config


def pair_entry(sha: str, /, **changes: Any) -> dict[str, Any]:
    """A sidecar's verification entry for the verifier with this sha256 (classes Screaming)."""
    entry: dict[str, Any] = {
        "verifier_sha256": sha,
        "head_sha256": "",
        "classes": ["Screaming"],
        "on_threshold": 0.71,
        "threshold": 0.33,
        "attempts": 3,
        "patience": None,
        "chosen": "a test",
    }
    return entry | changes


def model_with_pairs(tiny_model: Path, folder: Path, pairs: list[dict[str, Any]], name: str = "model") -> Path:
    """A copy of `tiny_model` in `folder` whose sidecar records these verification `pairs`."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    model = folder / f"{name}.tflite"
    model.write_bytes(tiny_model.read_bytes())
    sidecar = json.loads(tiny_model.with_suffix(".json").read_text())
    if pairs:
        sidecar["verification"] = pairs
    model.with_suffix(".json").write_text(json.dumps(sidecar))
    return model
