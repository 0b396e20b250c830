"""Full-integer int8 TFLite export with its JSON sidecar, checked against the float model."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.classifier import SIDECAR_FORMAT, Classifier, sha256_file, sidecar_path
from edge.errors import ScreamError
from edge.features import FeatureParams

MIN_INT8_AGREEMENT = 0.99


def allowed_disagreements(judged: int) -> int:
    """How many judged windows the int8 model may decide differently from the float model: 1% of
    them, and never fewer than one. Under 100 windows a 99% rule would allow none, and one window
    whose score sits a few int8 steps from `on` (internal rounding, not only the output's) is
    not the broken quantisation the gate is for; that shows as many flips."""
    return max(1, int(np.floor(judged * (1.0 - MIN_INT8_AGREEMENT) + 1e-9)))


class ExportError(ScreamError, RuntimeError):
    """The int8 model disagrees with the float model, or conversion failed."""


def code_version() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from edge import __version__

        return __version__


def convert_int8(model: Any, representative: npt.NDArray[np.float32]) -> bytes:
    """Keras model -> int8-in, int8-out TFLite flatbuffer (the converter recipe in TOOLCHAIN.md)."""
    import tensorflow as tf

    def samples() -> Iterator[list[npt.NDArray[np.float32]]]:
        for window in representative:
            yield [window[None, :, :, None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return strip_names(bytes(converter.convert()))


def strip_names(tflite_bytes: bytes) -> bytes:
    """The flatbuffer without its tensor and subgraph names and signature (about a fifth of a small
    ensemble's bytes: every fused op is named after every Keras layer in it). The edge finds its one
    input and one output by position, and the arithmetic is untouched."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))
    flatbuffer_utils.strip_strings(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def convert_float(model: Any) -> bytes:
    """The same network as a float32 TFLite model, kept beside the run to benchmark int8 against."""
    import tensorflow as tf

    return bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())


def _tensor_quantisation(tflite_bytes: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    from edge.classifier import load_interpreter_class

    interpreter_class, _ = load_interpreter_class()
    interpreter = interpreter_class(model_content=tflite_bytes)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()

    def describe(detail: dict[str, Any]) -> dict[str, Any]:
        scale, zero_point = detail["quantization"]
        return {
            "shape": [int(v) for v in detail["shape"]],
            "dtype": np.dtype(detail["dtype"]).name,
            "quantisation": {"scale": float(scale), "zero_point": int(zero_point)},
        }

    return describe(inp), describe(out)


def decision_agreement(
    float_scores: npt.NDArray[np.floating[Any]],
    int8_scores: npt.NDArray[np.floating[Any]],
    on: float,
    output_step: float,
) -> tuple[float, int]:
    """The share of windows on which the int8 model decides as the float model does at `on`, and how
    many windows were left out of it: those whose float score lies within one int8 output step of
    `on`, where the output's own rounding may put the int8 score on either side. Without that, one
    such window costs more than the 1% allowed when fewer than 100 windows are checked."""
    float_scores = np.asarray(float_scores, dtype=np.float64)
    int8_scores = np.asarray(int8_scores, dtype=np.float64)
    decided = np.abs(float_scores - on) > output_step
    borderline = int(np.count_nonzero(~decided))
    if not decided.any():
        return 1.0, borderline
    agree = (float_scores[decided] >= on) == (int8_scores[decided] >= on)
    return float(np.mean(agree)), borderline


def export_model(
    model: Any,
    out_path: str | Path,
    *,
    features: FeatureParams,
    window_frames: int,
    hop_frames: int,
    representative: npt.NDArray[np.float32],
    check_windows: npt.NDArray[np.float32],
    thresholds: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    operating_point: Callable[[Classifier], dict[str, Any]] | None = None,
    final_metrics: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write `<out>.tflite` and `<out>.json`; fail if int8 and float decisions differ on more than
    1% of the windows (or more than one window when fewer than 100 are judged).

    `operating_point`, if given, is called with the staged int8 classifier and returns the final
    `thresholds` block (chosen on what the edge will run); the agreement is checked at its `on`.
    `final_metrics`, if given, is called with the final thresholds and its result becomes the
    sidecar's `metrics`, so F1 and the confusion matrix are those at the `on` the edge will use."""
    out_path = Path(out_path).with_suffix(".tflite")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tflite_bytes = convert_int8(model, representative)
    input_info, output_info = _tensor_quantisation(tflite_bytes)
    # Stage under the final name so the edge classifier finds the sidecar; publish only if it passes.
    staging = out_path.parent / f".staging-{out_path.stem}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    staged = staging / out_path.name
    staged.write_bytes(tflite_bytes)
    sidecar: dict[str, Any] = {
        "format": SIDECAR_FORMAT,
        "name": out_path.stem,
        "labels": ["non_scream", "scream"],
        "features": features.to_dict(),
        "feature_hash": features.contract_hash,
        "window": {"frames": window_frames, "hop_frames": hop_frames},
        "input": input_info,
        "output": output_info,
        "thresholds": thresholds,
        "size_bytes": len(tflite_bytes),
        "sha256": sha256_file(staged),
        "code_version": code_version(),
        **(metadata or {}),
    }
    sidecar_path(staged).write_text(json.dumps(sidecar, indent=2) + "\n")
    try:
        float_scores = model.predict(check_windows[..., None], batch_size=256, verbose=0).reshape(-1)
        int8 = Classifier(staged, expected_features=features)
        if operating_point is not None:
            thresholds = sidecar["thresholds"] = operating_point(int8)
        if final_metrics is not None:
            sidecar["metrics"] = final_metrics(thresholds)
        int8_scores = np.array([int8.score(w) for w in check_windows])
        on = float(thresholds["on"])
        step = float(output_info["quantisation"]["scale"])
        agreement, borderline = decision_agreement(float_scores, int8_scores, on, step)
        judged = len(check_windows) - borderline
        flips = round((1.0 - agreement) * judged)
        allowed = allowed_disagreements(judged)
        if flips > allowed:
            raise ExportError(
                f"int8 model agrees with the float model on {agreement:.2%} of {judged} windows at "
                f"threshold {on} ({flips} decided otherwise; {borderline} within one int8 output step "
                f"of it are left out); at most {allowed} may differ ({1 - MIN_INT8_AGREEMENT:.0%} of "
                "them, and never fewer than one)"
            )
        sidecar["int8_check"] = {
            "windows": len(check_windows),
            "borderline_windows": borderline,
            "disagreements": flips,
            "allowed_disagreements": allowed,
            "decision_agreement": round(agreement, 5),
            "max_abs_score_difference": round(float(np.max(np.abs(float_scores - int8_scores))), 5),
        }
        sidecar_path(staged).write_text(json.dumps(sidecar, indent=2) + "\n")
        staged.replace(out_path)
        sidecar_path(staged).replace(sidecar_path(out_path))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sidecar
