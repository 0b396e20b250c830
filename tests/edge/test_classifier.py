from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from edge.classifier import Classifier, ModelSidecar, load_interpreter_class
from edge.config import DetectorConfig
from edge.errors import ModelError, RuntimeMissingError
from edge.features import FeatureParams
from edge.pipeline import detection_settings


def _edit_sidecar(model: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = model.with_suffix(".json")
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_loads_and_scores_in_unit_interval(tiny_model: Path) -> None:
    classifier = Classifier(tiny_model, expected_features=FeatureParams())
    frames, mels = classifier.input_shape
    assert (frames, mels) == (96, 40)
    window = np.random.default_rng(0).normal(-8, 2, size=(frames, mels)).astype(np.float32)
    score = classifier.score(window)
    assert 0.0 <= score <= 1.0
    assert classifier.score(window) == score  # deterministic
    with pytest.raises(ValueError, match="window shape"):
        classifier.score(window[:10])


def test_quantisation_uses_the_models_scale_and_zero_point(tiny_model: Path) -> None:
    classifier = Classifier(tiny_model)
    quant = classifier.sidecar.input_quant
    x = np.array([[-1e9, 0.0, 1e9]], dtype=np.float32)
    q = classifier.quantise(x)
    assert q.dtype == np.int8 and q[0, 0] == -128 and q[0, 2] == 127
    assert q[0, 1] == quant.zero_point


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        Classifier(tmp_path / "none.tflite")


def test_missing_sidecar(model_copy: Path) -> None:
    model_copy.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match=r"sidecar .* is missing"):
        Classifier(model_copy)


def test_sidecar_not_json(model_copy: Path) -> None:
    model_copy.with_suffix(".json").write_text("{nope")
    with pytest.raises(ModelError, match="not valid JSON"):
        Classifier(model_copy)


def test_corrupt_model_bytes_fail_sha256(model_copy: Path) -> None:
    data = bytearray(model_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_copy.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        Classifier(model_copy)


def test_garbage_model_with_matching_sidecar_fails_to_load(model_copy: Path) -> None:
    import hashlib

    model_copy.write_bytes(b"definitely not a flatbuffer" * 10)
    _edit_sidecar(model_copy, lambda d: d.update(sha256=hashlib.sha256(model_copy.read_bytes()).hexdigest()))
    with pytest.raises(ModelError, match="cannot be loaded"):
        Classifier(model_copy)


def test_feature_hash_tampering_is_caught(model_copy: Path) -> None:
    _edit_sidecar(model_copy, lambda d: d["features"].update(mel_bands=64))
    with pytest.raises(ModelError, match=r"feature_hash .* does not match"):
        Classifier(model_copy)


def test_model_trained_on_other_features_is_refused(model_copy: Path) -> None:
    with pytest.raises(ModelError, match="mel_bands 64 vs model's 40"):
        Classifier(model_copy, expected_features=FeatureParams(mel_bands=64))


def test_sidecar_shape_disagreeing_with_tensor(model_copy: Path) -> None:
    _edit_sidecar(model_copy, lambda d: d["window"].update(frames=50))
    with pytest.raises(ModelError, match=r"input shape is \[1, 96, 40, 1\], sidecar and features say \[1, 50, 40, 1\]"):
        Classifier(model_copy)


def test_sidecar_quantisation_disagreeing_with_tensor(model_copy: Path) -> None:
    _edit_sidecar(model_copy, lambda d: d["input"]["quantisation"].update(zero_point=3))
    with pytest.raises(ModelError, match="input quantisation"):
        Classifier(model_copy)


def test_sidecar_missing_key(model_copy: Path) -> None:
    _edit_sidecar(model_copy, lambda d: d.pop("thresholds"))
    with pytest.raises(ModelError, match="lacks the key 'thresholds'"):
        ModelSidecar.load(model_copy.with_suffix(".json"))


def test_runtime_order_and_missing_runtime() -> None:
    _, name = load_interpreter_class()
    assert name == "ai_edge_litert.interpreter"
    with pytest.raises(RuntimeMissingError, match="pip install ai-edge-litert"):
        load_interpreter_class("no_such_runtime_module")


def test_patience_in_the_sidecar(model_copy: Path) -> None:
    _edit_sidecar(model_copy, lambda d: d["thresholds"].update(patience_windows=2, patience_of=3))
    side = ModelSidecar.load(model_copy.with_suffix(".json"))
    point = side.operating_point
    assert (point.patience_windows, point.patience_of) == (2, 3)
    assert point.to_sidecar()["on"] == json.loads(model_copy.with_suffix(".json").read_text())["thresholds"]["on"]
    # What a site runs: the model's own at its hop, and the same time span at a 100 ms hop.
    params, hop = detection_settings(side)
    assert hop == side.hop_frames == 25 and (params.patience_windows, params.patience_of) == (2, 3)
    assert (params.on_threshold, params.off_threshold) == (point.on_threshold, point.off_threshold)
    params, hop = detection_settings(side, DetectorConfig(hop_ms=100))
    assert hop == 10 and (params.patience_windows, params.patience_of) == (4, 6)
    assert side.hop_frames_for(100) == 10 and side.hop_frames_for(1) == 1


def test_sidecar_without_patience_means_one_of_one(model_copy: Path) -> None:
    def drop(d: dict) -> None:  # type: ignore[type-arg]
        d["thresholds"].pop("patience_windows", None)
        d["thresholds"].pop("patience_of", None)
        d["thresholds"].pop("smoothing_windows", None)

    _edit_sidecar(model_copy, drop)
    side = ModelSidecar.load(model_copy.with_suffix(".json"))
    for site in (DetectorConfig(), DetectorConfig(hop_ms=100)):
        params, _ = detection_settings(side, site)
        assert (params.patience_windows, params.patience_of, params.smoothing_windows) == (1, 1, 1)


def test_smoothing_in_the_sidecar(model_copy: Path) -> None:
    _edit_sidecar(model_copy, lambda d: d["thresholds"].update(smoothing_windows=3))
    side = ModelSidecar.load(model_copy.with_suffix(".json"))
    assert detection_settings(side)[0].smoothing_windows == 3
    # The same span at a 100 ms hop: 3 windows 250 ms apart (500 ms between first and last) become 6.
    assert detection_settings(side, DetectorConfig(hop_ms=100))[0].smoothing_windows == 6
    _edit_sidecar(model_copy, lambda d: d["thresholds"].update(smoothing_windows=0))
    with pytest.raises(ModelError, match="smoothing_windows"):
        Classifier(model_copy)


@pytest.mark.parametrize(
    "patience, message",
    [
        ((3, 2), r"patience_windows must be at most patience_of \(2\), got 3"),
        ((0, 1), "patience_windows"),
        (("two", 2), "malformed"),
    ],
)
def test_bad_patience_in_the_sidecar(model_copy: Path, patience: tuple[object, object], message: str) -> None:
    _edit_sidecar(model_copy, lambda d: d["thresholds"].update(patience_windows=patience[0], patience_of=patience[1]))
    with pytest.raises(ModelError, match=message):
        Classifier(model_copy)


def test_scaled_patience_stays_within_the_detectors_bounds(model_copy: Path) -> None:
    _edit_sidecar(model_copy, lambda d: d["thresholds"].update(patience_windows=60, patience_of=60))
    side = ModelSidecar.load(model_copy.with_suffix(".json"))
    params, _ = detection_settings(side, DetectorConfig(hop_ms=100))
    assert (params.patience_windows, params.patience_of) == (100, 100)  # 149 of 149: over the limit of 100


@pytest.mark.parametrize(
    "role, key, value, actual",
    [
        ("input", "shape", [1, 98, 40, 1], "[1, 96, 40, 1]"),
        ("output", "shape", [1, 2], "[1, 1]"),
        ("input", "dtype", "float32", "int8"),
        ("output", "dtype", "uint8", "int8"),
    ],
)
def test_every_tensor_field_the_sidecar_declares_is_checked(
    model_copy: Path, role: str, key: str, value: object, actual: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge.cli import main

    _edit_sidecar(model_copy, lambda d: d[role].update({key: value}))
    message = f"sidecar {role}.{key} is {value}, the model's {role} tensor is {actual}"
    with pytest.raises(ModelError, match=re.escape(message)):
        Classifier(model_copy)
    assert main(["check-model", str(model_copy)]) == 2
    assert message in capsys.readouterr().err


def test_windows_are_quantised_to_the_nearest_step_and_clipped(tiny_model: Path) -> None:
    """q = round(x / scale + zero_point), clipped to int8, computed here by hand from the sidecar."""
    classifier = Classifier(tiny_model)
    side = json.loads(tiny_model.with_suffix(".json").read_text())["input"]["quantisation"]
    scale, zero = side["scale"], side["zero_point"]
    steps = np.array([3.7, 3.2, -2.7, -2.2, 0.4, 500.0, -500.0])  # x / scale + zero_point
    expected = np.array([4, 3, -3, -2, 0, 127, -128], dtype=np.int8)
    window = np.zeros(classifier.input_shape, np.float32)
    window.flat[: steps.size] = ((steps - zero) * scale).astype(np.float32)
    np.testing.assert_array_equal(classifier.quantise(window).flat[: steps.size], expected)


class EditedInterpreter:
    """The real LiteRT interpreter with its tensor details edited by `EDIT` and its keyword
    arguments recorded: shapes, types and quantisation no exporter here would produce."""

    EDIT: ClassVar[dict[str, Any]] = {}
    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        from ai_edge_litert.interpreter import Interpreter

        type(self).made.append(kwargs)
        self._real = Interpreter(model_path=kwargs["model_path"])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def get_input_details(self) -> list[dict[str, Any]]:
        return self.EDIT.get("inputs", lambda d: d)(self._real.get_input_details())

    def get_output_details(self) -> list[dict[str, Any]]:
        return self.EDIT.get("outputs", lambda d: d)(self._real.get_output_details())


@pytest.fixture
def edited(monkeypatch: pytest.MonkeyPatch) -> type[EditedInterpreter]:
    from edge import classifier

    EditedInterpreter.made = []
    EditedInterpreter.EDIT = {}
    monkeypatch.setattr(classifier, "load_interpreter_class", lambda preferred=None: (EditedInterpreter, "edited"))
    return EditedInterpreter


def _with(details: list[dict[str, Any]], **changes: Any) -> list[dict[str, Any]]:
    return [{**details[0], **changes}]


def test_the_interpreter_gets_one_thread_unless_asked_otherwise(
    model_copy: Path, edited: type[EditedInterpreter]
) -> None:
    Classifier(model_copy)
    Classifier(model_copy, num_threads=3)
    assert [(m["model_path"], m["num_threads"]) for m in edited.made] == [(str(model_copy), 1), (str(model_copy), 3)]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"inputs": lambda d: d + d}, "must have one input and one output tensor"),
        ({"outputs": lambda d: d + d}, "must have one input and one output tensor"),
        ({"outputs": lambda d: _with(d, shape=np.array([1, 2]))}, "model output shape is [1, 2], expected [1, 1]"),
        ({"inputs": lambda d: _with(d, quantization=(0.0, 0))}, "model input has no quantisation parameters"),
        ({"outputs": lambda d: _with(d, quantization=(0.0, 0))}, "model output has no quantisation parameters"),
    ],
)
def test_tensors_the_edge_cannot_feed_are_refused_by_name(
    model_copy: Path, edited: type[EditedInterpreter], edit: dict[str, Any], message: str
) -> None:
    edited.EDIT = edit
    with pytest.raises(ModelError) as caught:
        Classifier(model_copy)
    assert str(caught.value).endswith(message)
    if "one input" in message:
        assert str(caught.value) == f"model {model_copy} must have one input and one output tensor"


@pytest.mark.parametrize("role", ["input", "output"])
def test_a_tensor_that_is_not_int8_is_refused_even_when_the_sidecar_names_no_type(
    model_copy: Path, edited: type[EditedInterpreter], role: str
) -> None:
    _edit_sidecar(model_copy, lambda d: d[role].pop("dtype", None))
    edited.EDIT = {f"{role}s": lambda d: _with(d, dtype=np.float32)}
    with pytest.raises(ModelError) as caught:
        Classifier(model_copy)
    assert str(caught.value) == f"model {role} is float32, expected int8"


def test_the_sidecar_scale_must_match_to_one_part_in_a_million(model_copy: Path) -> None:
    side = json.loads(model_copy.with_suffix(".json").read_text())["input"]["quantisation"]
    _edit_sidecar(model_copy, lambda d: d["input"]["quantisation"].update(scale=side["scale"] * (1 + 3e-7)))
    Classifier(model_copy)  # within rounding of the JSON float
    _edit_sidecar(model_copy, lambda d: d["input"]["quantisation"].update(scale=side["scale"] * (1 + 5e-6)))
    with pytest.raises(ModelError, match=r"model input quantisation \(scale .*\) differs from the sidecar's"):
        Classifier(model_copy)


def test_a_corrupt_model_names_both_digests(model_copy: Path) -> None:
    from edge.classifier import sha256_file

    expected = json.loads(model_copy.with_suffix(".json").read_text())["sha256"]
    data = bytearray(model_copy.read_bytes())
    data[-1] ^= 0x01
    model_copy.write_bytes(bytes(data))
    with pytest.raises(ModelError) as caught:
        Classifier(model_copy)
    assert str(caught.value) == (
        f"model {model_copy} has sha256 {sha256_file(model_copy)[:12]}…, its sidecar says {expected[:12]}…: "
        "the file is corrupt or the sidecar belongs to another model"
    )


def test_the_runtime_comes_from_the_argument_then_the_environment(
    model_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCREAM_TFLITE_RUNTIME", "no_such_runtime_module")
    with pytest.raises(RuntimeMissingError, match="no_such_runtime_module: No module named 'no_such_runtime_module'"):
        Classifier(model_copy)
    assert Classifier(model_copy, runtime="ai_edge_litert.interpreter").runtime == "ai_edge_litert.interpreter"
    monkeypatch.delenv("SCREAM_TFLITE_RUNTIME")
    assert Classifier(model_copy).runtime == "ai_edge_litert.interpreter"


def test_an_unimportable_runtime_is_passed_over_and_every_failure_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge import classifier

    monkeypatch.setattr(classifier, "RUNTIME_MODULES", ("no_such_a", "ai_edge_litert.interpreter"))
    assert load_interpreter_class()[1] == "ai_edge_litert.interpreter"
    monkeypatch.setattr(classifier, "RUNTIME_MODULES", ("no_such_a", "no_such_b"))
    with pytest.raises(RuntimeMissingError) as caught:
        load_interpreter_class()
    assert str(caught.value) == (
        "no TFLite runtime is importable (no_such_a: No module named 'no_such_a'; "
        "no_such_b: No module named 'no_such_b'): pip install ai-edge-litert"
    )


def test_a_feature_mismatch_names_every_differing_parameter() -> None:
    from edge.classifier import _describe_difference

    ours, theirs = FeatureParams(mel_bands=64, fmax_hz=7000.0), FeatureParams()
    assert _describe_difference(ours, theirs) == "mel_bands 64 vs model's 40, fmax_hz 7000.0 vs model's 7600.0"
    assert _describe_difference(theirs, FeatureParams()) == "same values, different algorithm version"


def test_a_sidecar_of_another_format_is_refused_naming_both(model_copy: Path) -> None:
    _edit_sidecar(model_copy, lambda d: d.update(format="scream-model-sidecar/0"))
    sidecar = model_copy.with_suffix(".json")
    with pytest.raises(ModelError) as caught:
        ModelSidecar.load(sidecar)
    assert str(caught.value) == (
        f"model sidecar {sidecar}: sidecar format is 'scream-model-sidecar/0', expected 'scream-model-sidecar/1'"
    )


def test_the_sidecar_name_is_read_as_text(model_copy: Path) -> None:
    _edit_sidecar(model_copy, lambda d: d.update(name=512))
    assert ModelSidecar.load(model_copy.with_suffix(".json")).name == "512"
    _edit_sidecar(model_copy, lambda d: d.update(name="scream-site-7"))
    assert ModelSidecar.load(model_copy.with_suffix(".json")).name == "scream-site-7"


@pytest.mark.parametrize("frames, hop, accepted", [(1, 1, True), (1, 0, False), (0, 1, False), (96, -1, False)])
def test_window_and_hop_frames_must_each_be_at_least_one(
    model_copy: Path, frames: int, hop: int, accepted: bool
) -> None:
    _edit_sidecar(model_copy, lambda d: d["window"].update(frames=frames, hop_frames=hop))
    sidecar = model_copy.with_suffix(".json")
    if accepted:
        loaded = ModelSidecar.load(sidecar)
        assert (loaded.window_frames, loaded.hop_frames) == (frames, hop)
        return
    with pytest.raises(ModelError) as caught:
        ModelSidecar.load(sidecar)
    assert str(caught.value) == f"model sidecar {sidecar}: window frames and hop frames must be positive"
