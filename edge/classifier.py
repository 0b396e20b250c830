"""Load an int8 TFLite model with its JSON sidecar, check the contract, and score windows.

The runtime is imported lazily: ai_edge_litert, then tflite_runtime, then tensorflow.lite.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.detector import MAX_VERIFY_ATTEMPTS, DecisionParams
from edge.errors import ConfigError, ModelError, RuntimeMissingError
from edge.features import FeatureParams

SIDECAR_FORMAT = "scream-model-sidecar/1"
RUNTIME_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(model_path: str | os.PathLike[str]) -> Path:
    return Path(model_path).with_suffix(".json")


@dataclass(frozen=True, kw_only=True)
class Quantisation:
    scale: float
    zero_point: int


@dataclass(frozen=True, kw_only=True)
class VerificationPair:
    """A second stage's settings chosen for one model on its validation scenes (`scream verification
    --record`), kept in the model's sidecar under `verification` so they follow the model wherever it
    is deployed. It holds for one verifier only: the model file's sha256, and either the sha256 of
    the head file that scores (`head_sha256`) or the classes whose best score does (`classes`)."""

    verifier_sha256: str
    head_sha256: str  # "" when classes score
    classes: tuple[str, ...]  # () when a head scores
    on_threshold: float  # the student's `on` chosen with the verifier
    threshold: float  # the verifier's: vetoed below this
    attempts: int  # verdicts per candidate it was chosen with
    patience: tuple[int, int] | None = None  # k of n windows it was chosen with; None: the model's own
    chosen: str = ""  # how and where it was chosen (the report), for people

    @property
    def key(self) -> tuple[str, str, tuple[str, ...]]:
        """The verdict these settings hold for (verdict_key)."""
        return verdict_key(self.verifier_sha256, self.head_sha256, self.classes)

    def holds_for(self, verifier_sha256: str, head_sha256: str, classes: tuple[str, ...]) -> bool:
        """Whether these are the settings of this verdict: the same verifier file and the same head
        file, or (no head) the same classes in any order."""
        return self.key == verdict_key(verifier_sha256, head_sha256, classes)

    @property
    def verdict(self) -> str:
        return f"head {self.head_sha256[:12]}" if self.head_sha256 else ", ".join(self.classes)

    def to_sidecar(self) -> dict[str, Any]:
        return {
            "verifier_sha256": self.verifier_sha256,
            "head_sha256": self.head_sha256,
            "classes": list(self.classes),
            "on_threshold": self.on_threshold,
            "threshold": self.threshold,
            "attempts": self.attempts,
            "patience": list(self.patience) if self.patience else None,
            "chosen": self.chosen,
        }

    @classmethod
    def from_sidecar(cls, entry: Any) -> VerificationPair:
        """One entry of a sidecar's `verification` list; anything malformed is a ModelError."""
        if not isinstance(entry, dict):
            raise ModelError(f"a verification entry must be an object, got {type(entry).__name__}")
        missing = [
            k
            for k in ("verifier_sha256", "head_sha256", "classes", "on_threshold", "threshold", "attempts")
            if k not in entry
        ]
        if missing:
            raise ModelError(f"a verification entry has no {missing[0]!r}")
        verifier, head, classes = entry["verifier_sha256"], entry["head_sha256"], entry["classes"]
        on, threshold, attempts = entry["on_threshold"], entry["threshold"], entry["attempts"]
        patience = entry.get("patience")

        def number(x: Any) -> bool:
            return isinstance(x, int | float) and not isinstance(x, bool)

        def whole(x: Any) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        checks = {  # each field: (whether it holds, the rule it breaks), as config sections check theirs
            "verifier_sha256": (isinstance(verifier, str) and len(verifier) == 64, "a sha256 (64 hex digits)"),
            "head_sha256": (isinstance(head, str) and len(head) in (0, 64), "a sha256 or empty"),
            "classes": (
                isinstance(classes, list)
                and all(isinstance(c, str) and c for c in classes)
                and (bool(classes) != bool(head)),
                "a list of class names, empty exactly when head_sha256 is set",
            ),
            "on_threshold": (number(on) and 0.0 < on < 1.0, "in (0, 1)"),
            "threshold": (number(threshold) and 0.0 < threshold < 1.0, "in (0, 1)"),
            "attempts": (whole(attempts) and 1 <= attempts <= MAX_VERIFY_ATTEMPTS, f"in 1-{MAX_VERIFY_ATTEMPTS}"),
            "patience": (
                patience is None
                or (
                    isinstance(patience, list)
                    and len(patience) == 2
                    and all(whole(v) for v in patience)
                    and 1 <= patience[0] <= patience[1]
                ),
                "null or [k, n] with 1 <= k <= n",
            ),
            "chosen": (isinstance(entry.get("chosen", ""), str), "a string"),
        }
        bad = [(k, rule) for k, (ok, rule) in checks.items() if not ok]
        if bad:
            name, rule = bad[0]
            raise ModelError(f"a verification entry's {name} must be {rule}, got {entry.get(name)!r}")
        return cls(
            verifier_sha256=verifier,
            head_sha256=head,
            classes=tuple(classes),
            on_threshold=float(on),
            threshold=float(threshold),
            attempts=attempts,
            patience=(patience[0], patience[1]) if patience else None,
            chosen=entry.get("chosen", ""),
        )


def verdict_key(verifier_sha256: str, head_sha256: str, classes: Sequence[str]) -> tuple[str, str, tuple[str, ...]]:
    """What a verifier's verdict is, for matching a model's recorded pairs to it: the verifier file,
    and the head file that scores, or (no head) the classes, in any order."""
    return verifier_sha256, head_sha256, () if head_sha256 else tuple(sorted(classes))


def _verification(block: Any) -> tuple[VerificationPair, ...]:
    if not isinstance(block, list):
        raise ModelError(f"verification must be a list, got {type(block).__name__}")
    pairs = tuple(VerificationPair.from_sidecar(entry) for entry in block)
    keys = [p.key for p in pairs]
    if len(set(keys)) != len(keys):
        raise ModelError("verification holds two pairs for the same verifier and verdict")
    return pairs


@dataclass(frozen=True, kw_only=True)
class ModelSidecar:
    """The parts of `models/<name>.json` the edge relies on; the rest is kept in `raw`."""

    name: str
    features: FeatureParams
    feature_hash: str
    window_frames: int
    hop_frames: int
    input_quant: Quantisation
    output_quant: Quantisation
    operating_point: DecisionParams  # the sidecar's `thresholds` block, at the model's own hop
    sha256: str
    raw: dict[str, Any]
    verification: tuple[VerificationPair, ...] = ()  # second-stage settings chosen for this model

    def pair_for(self, verifier_sha256: str, head_sha256: str, classes: tuple[str, ...]) -> VerificationPair | None:
        """The settings recorded for this verdict (VerificationPair.holds_for), if any."""
        return next((p for p in self.verification if p.holds_for(verifier_sha256, head_sha256, classes)), None)

    @property
    def window_s(self) -> float:
        p = self.features
        return ((self.window_frames - 1) * p.hop_samples + p.window_samples) / p.sample_rate_hz

    @property
    def hop_s(self) -> float:
        return self.hop_frames * self.features.hop_samples / self.features.sample_rate_hz

    def hop_frames_for(self, hop_ms: float) -> int:
        """A window hop in milliseconds as a whole number of feature frames (at least one)."""
        return max(1, round(hop_ms / self.features.hop_ms))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelSidecar:
        path = Path(path)
        if not path.exists():
            raise ModelError(f"model sidecar {path} is missing (every model needs its JSON sidecar)")
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"model sidecar {path} is not valid JSON: {exc}") from exc
        try:
            if raw.get("format") != SIDECAR_FORMAT:
                raise ModelError(f"sidecar format is {raw.get('format')!r}, expected {SIDECAR_FORMAT!r}")
            features = FeatureParams.from_dict(raw["features"])
            sidecar = cls(
                name=str(raw["name"]),
                features=features,
                feature_hash=str(raw["feature_hash"]),
                window_frames=int(raw["window"]["frames"]),
                hop_frames=int(raw["window"]["hop_frames"]),
                input_quant=Quantisation(**raw["input"]["quantisation"]),
                output_quant=Quantisation(**raw["output"]["quantisation"]),
                operating_point=_operating_point(raw["thresholds"]),
                sha256=str(raw["sha256"]),
                raw=raw,
                verification=_verification(raw.get("verification", [])),
            )
        except KeyError as exc:
            raise ModelError(f"model sidecar {path} lacks the key {exc}") from exc
        except ModelError as exc:  # before ValueError, which ModelError also is
            raise ModelError(f"model sidecar {path}: {exc}") from exc
        except (TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"model sidecar {path} is malformed: {exc}") from exc
        if sidecar.features.contract_hash != sidecar.feature_hash:
            raise ModelError(
                f"model sidecar {path}: feature_hash {sidecar.feature_hash} does not match its own "
                f"feature parameters (hash {sidecar.features.contract_hash})"
            )
        if sidecar.window_frames < 1 or not sidecar.hop_frames >= 1:
            raise ModelError(f"model sidecar {path}: window frames and hop frames must be positive")
        return sidecar


def _operating_point(block: dict[str, Any]) -> DecisionParams:
    try:
        return DecisionParams.from_sidecar(block)
    except ConfigError as exc:  # the one validator's message, as a model problem
        raise ModelError(f"thresholds: {exc}") from exc


def load_interpreter_class(preferred: str | None = None) -> tuple[Any, str]:
    """The first importable TFLite interpreter class and its module name."""
    candidates = (preferred,) if preferred else RUNTIME_MODULES
    errors = []
    for module_name in candidates:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{module_name}: {exc}")
            continue
        return module.Interpreter, module_name
    raise RuntimeMissingError("no TFLite runtime is importable (" + "; ".join(errors) + "): pip install ai-edge-litert")


def open_interpreter(
    model_path: Path, *, runtime: str | None, num_threads: int, what: str, preserve_all_tensors: bool = False
) -> tuple[Any, str]:
    """`model_path` opened by `runtime` (else $SCREAM_TFLITE_RUNTIME, else the first importable one)
    with its tensors allocated, and the runtime's name; a file it cannot load is a ModelError that
    calls it `what`. `preserve_all_tensors` keeps intermediate tensors readable after `invoke()`
    (both runtimes take it; it costs the arena's memory reuse)."""
    interpreter_class, name = load_interpreter_class(runtime or os.environ.get("SCREAM_TFLITE_RUNTIME"))
    extra = {"experimental_preserve_all_tensors": True} if preserve_all_tensors else {}
    try:
        with warnings.catch_warnings():  # LiteRT warns that preserving every tensor costs memory
            warnings.simplefilter("ignore", UserWarning)
            interpreter = interpreter_class(model_path=str(model_path), num_threads=num_threads, **extra)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{what} {model_path} cannot be loaded by {name}: {exc}") from exc
    return interpreter, name


class Classifier:
    """An int8 TFLite scream classifier: `score(window)` returns a probability in [0, 1]."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        expected_features: FeatureParams | None = None,
        runtime: str | None = None,
        num_threads: int = 1,
    ) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.exists():
            raise ModelError(f"model file {self.model_path} does not exist")
        self.sidecar = ModelSidecar.load(sidecar_path(self.model_path))
        self.sha256 = sha256_file(self.model_path)
        if self.sha256 != self.sidecar.sha256:
            raise ModelError(
                f"model {self.model_path} has sha256 {self.sha256[:12]}…, its sidecar says "
                f"{self.sidecar.sha256[:12]}…: the file is corrupt or the sidecar belongs to another model"
            )
        if expected_features is not None and expected_features != self.sidecar.features:
            raise ModelError(
                f"model {self.model_path} was trained on features {self.sidecar.feature_hash}, "
                f"this detector computes {expected_features.contract_hash}: "
                + _describe_difference(expected_features, self.sidecar.features)
            )
        self._interpreter, self.runtime = open_interpreter(
            self.model_path, runtime=runtime, num_threads=num_threads, what="model"
        )
        self._check_tensors()

    def _check_tensors(self) -> None:
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"model {self.model_path} must have one input and one output tensor")
        self._input, self._output = inputs[0], outputs[0]
        side = self.sidecar
        expected_in = [1, side.window_frames, side.features.mel_bands, 1]
        input_shape = [int(v) for v in self._input["shape"]]
        output_shape = [int(v) for v in self._output["shape"]]
        if input_shape != expected_in:
            raise ModelError(f"model input shape is {input_shape}, sidecar and features say {expected_in}")
        if output_shape != [1, 1]:
            raise ModelError(f"model output shape is {output_shape}, expected [1, 1]")
        # Every tensor field the sidecar declares must be what the model holds.
        for role, detail, shape in (("input", self._input, input_shape), ("output", self._output, output_shape)):
            declared = side.raw.get(role, {})
            actual = {"shape": shape, "dtype": np.dtype(detail["dtype"]).name}
            for key, value in actual.items():
                if key in declared and declared[key] != value:
                    raise ModelError(
                        f"model {self.model_path}: sidecar {role}.{key} is {declared[key]}, the model's {role} "
                        f"tensor is {value}"
                    )
        for role, detail, declared in (
            ("input", self._input, side.input_quant),
            ("output", self._output, side.output_quant),
        ):
            if detail["dtype"] != np.int8:
                raise ModelError(f"model {role} is {np.dtype(detail['dtype']).name}, expected int8")
            scale, zero_point = detail["quantization"]
            if scale <= 0:
                raise ModelError(f"model {role} has no quantisation parameters")
            if not np.isclose(scale, declared.scale, rtol=1e-6) or zero_point != declared.zero_point:
                raise ModelError(
                    f"model {role} quantisation (scale {scale}, zero point {zero_point}) differs from "
                    f"the sidecar's (scale {declared.scale}, zero point {declared.zero_point})"
                )
        self._in_scale, self._in_zero = self._input["quantization"]
        self._out_scale, self._out_zero = self._output["quantization"]

    @property
    def input_shape(self) -> tuple[int, int]:
        return self.sidecar.window_frames, self.sidecar.features.mel_bands

    def quantise(self, window: npt.NDArray[np.float32]) -> npt.NDArray[np.int8]:
        q = np.round(window / self._in_scale + self._in_zero)
        return np.asarray(np.clip(q, -128, 127), dtype=np.int8)

    def score(self, window: npt.NDArray[np.float32]) -> float:
        """Probability that the (window_frames, mel_bands) log-mel window holds a scream."""
        if window.shape != self.input_shape:
            raise ValueError(f"window shape {window.shape} != model input {self.input_shape}")
        self._interpreter.set_tensor(self._input["index"], self.quantise(window)[None, :, :, None])
        self._interpreter.invoke()
        raw = int(self._interpreter.get_tensor(self._output["index"])[0, 0])
        return float((raw - self._out_zero) * self._out_scale)


def _describe_difference(a: FeatureParams, b: FeatureParams) -> str:
    da, db = a.to_dict(), b.to_dict()
    diffs = [f"{k} {da[k]} vs model's {db[k]}" for k in da if da[k] != db[k]]
    return ", ".join(diffs) or "same values, different algorithm version"
