"""The optional second stage: a larger audio model confirms each candidate event before it fires.

The int8 student scores every window; only when its decisions would start an event does the verifier
score the audio of the windows that raised it (from the event's first hit to the window that detected
it) and keep the event if its best score reaches `[verifier] threshold`. A vetoed candidate still
runs its course inside the detector (hysteresis, cooldown) but reaches no output, which is exactly
how `scream teacher-row` measured the cascade on leave-source-out scenes. The cost is one verifier
invoke per raising window per candidate, never per hop.

The model is a TF-Lite classifier of 16 kHz mono waveform windows with a class map CSV (index, mid,
display_name), as Google's YAMNet release is (input float32 [15600], output [1, 521] class scores).
It is not bundled (4 MB, not trained by this project): `[verifier] model` names the file, and the
edge runs without it. It loads through the same runtime search as the classifier.

The verdict is either the best of some of its classes' scores (`classes`, e.g. YAMNet's
"Screaming"), or, with `[verifier] head`, a logistic head on one of its tensors: a small JSON file
that `scream verifier-head` fits on the project's corpus (train/verifier_head.py), naming the tensor
(YAMNet's 1024-d embedding), the sha256 of the model it was fitted on, and its weights. The head
scores sigmoid(w . e / |e| + b) for the tensor's values e, exactly as the training side scored it.

Its threshold and verdicts per candidate belong to the model behind it, not to the verifier: with
`threshold` 0 (and `attempts` 0) they, and the student's `on`, come from the pair recorded in the
running model's sidecar for this very verdict (edge.classifier.VerificationPair, `pair_in`), so a
model deployed later brings its own; edge.pipeline.verifier_plan applies them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from edge.classifier import ModelSidecar, VerificationPair, open_interpreter, sha256_file
from edge.detector import MAX_VERIFY_ATTEMPTS
from edge.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from edge.config import VerifierConfig

VERIFIER_RATE_HZ = 16000  # YAMNet's rate, and the feature contract's
UNVERIFIED_SCORE = 1.0  # the verdict when the verifier fails: a fault never silences an alarm
log = logging.getLogger("scream")


@dataclass(frozen=True, kw_only=True)
class VerifierStats:
    """What the verifier has done since start: candidates checked and vetoed, invoke time."""

    checked: int
    vetoed: int
    windows: int
    invoke_ms_total: float
    last_score: float | None
    errors: int = 0  # candidates let through unverified because the verifier failed
    last_error: str = ""


def read_class_map(path: Path) -> list[str]:
    """Display names by class index from a YAMNet-style class map (index, mid, display_name)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError as exc:
        raise ModelError(f"verifier class map {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ModelError(f"verifier class map {path} cannot be read: {exc}") from exc
    if not rows or "display_name" not in rows[0]:
        raise ModelError(f"verifier class map {path} needs the header index,mid,display_name")
    return [row["display_name"] for row in rows]


HEAD_FORMAT = "scream-verifier-head/1"


@dataclass(frozen=True)
class EmbeddingHead:
    """A logistic regression on a verifier model's tensor (unit-length), read from a head file."""

    path: Path
    tensor: str
    model_sha256: str
    coef: npt.NDArray[np.float64]
    intercept: float
    sha256: str = ""  # of the head file itself: which verdict a model's VerificationPair holds for

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EmbeddingHead:
        """The head in `path`; anything missing, malformed or not finite is a ModelError naming it."""
        where = Path(path)
        try:
            raw = where.read_bytes()
            data = json.loads(raw.decode("utf-8"))
        except FileNotFoundError as exc:
            raise ModelError(f"verifier head {where} does not exist") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"verifier head {where} cannot be read: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != HEAD_FORMAT:
            raise ModelError(f"verifier head {where} is not a {HEAD_FORMAT} file (written by scream verifier-head)")
        missing = [key for key in ("tensor", "model_sha256", "coef", "intercept") if key not in data]
        if missing:
            raise ModelError(f"verifier head {where} has no field {missing[0]!r}")
        tensor, sha = data["tensor"], data["model_sha256"]
        if not isinstance(tensor, str) or not isinstance(sha, str):
            raise ModelError(f"verifier head {where}: 'tensor' and 'model_sha256' must be strings")
        try:
            intercept = float(data["intercept"])
        except (TypeError, ValueError) as exc:
            raise ModelError(f"verifier head {where}: 'intercept' is not a number ({data['intercept']!r})") from exc
        try:
            coef = np.asarray(data["coef"], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"verifier head {where}: 'coef' is not a list of numbers ({exc})") from exc
        if coef.ndim != 1 or coef.size == 0 or not np.all(np.isfinite(coef)) or not math.isfinite(intercept):
            raise ModelError(f"verifier head {where} needs a non-empty list of finite weights and a finite intercept")
        if not tensor or len(sha) != 64:
            raise ModelError(f"verifier head {where} must name its tensor and its model's sha256")
        return cls(where, tensor, sha, coef, intercept, hashlib.sha256(raw).hexdigest())

    def score(self, values: npt.NDArray[np.float32]) -> float:
        """sigmoid(w . e / |e| + b), e the tensor's values (a zero vector stays zero)."""
        e = values.astype(np.float64).ravel()
        norm = float(np.linalg.norm(e))
        z = float((e / norm if norm > 0 else e) @ self.coef) + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


class EventVerifier:
    """A waveform classifier that scores one window of 16 kHz audio: the highest score among
    `classes`, or with `head` that head's score of its tensor."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        classes: list[str],
        threshold: float,
        attempts: int = 1,
        class_map: str | os.PathLike[str] | None = None,
        head: str | os.PathLike[str] | None = None,
        runtime: str | None = None,
        num_threads: int = 1,
    ) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelError(f"verifier model {self.model_path} does not exist")
        if not 0.0 <= threshold < 1.0:
            raise ConfigError(f"verifier threshold must be 0 (the model's pair) or in (0, 1), got {threshold}")
        if not 0 <= attempts <= MAX_VERIFY_ATTEMPTS:
            raise ConfigError(
                f"verifier attempts must be 0 (the model's pair) or in 1-{MAX_VERIFY_ATTEMPTS}, got {attempts}"
            )
        # What was asked for (0: the running model's pair), and what is in force: edge.pipeline's
        # verifier_plan sets `threshold` and `attempts` for each model it runs behind.
        self.requested = (threshold, attempts)
        self.threshold = threshold
        self.attempts = attempts or 1
        self.sha256 = sha256_file(self.model_path)
        self._checked = 0
        self._vetoed = 0
        self._windows = 0
        self._invoke_s = 0.0
        self._last_score: float | None = None
        self._errors = 0
        self._last_error = ""
        self.head = EmbeddingHead.load(head) if head else None
        if self.head is not None:
            self._open_with_head(self.head, runtime, num_threads)
            return
        map_path = Path(class_map) if class_map else self.model_path.with_name(self.model_path.stem + "_class_map.csv")
        names = read_class_map(map_path)
        unknown = [c for c in classes if c not in names]
        if not classes or unknown:
            raise ConfigError(
                f"verifier.classes must name classes of {map_path.name}"
                + (f": {unknown[0]!r} is not one of its {len(names)} classes" if unknown else ", got none")
            )
        self.classes = list(classes)
        self.class_indices = [names.index(c) for c in classes]
        self._open(runtime, num_threads, preserve_all_tensors=False)
        outputs = [d for d in self._interpreter.get_output_details() if [int(v) for v in d["shape"]] == [1, len(names)]]
        if not outputs:
            raise ModelError(
                f"verifier model {self.model_path} has no [1, {len(names)}] class-score output to match "
                f"the {len(names)} classes of {map_path.name}"
            )
        self._output = outputs[0]

    def _open(self, runtime: str | None, num_threads: int, *, preserve_all_tensors: bool) -> None:
        self._interpreter, self.runtime = open_interpreter(
            self.model_path,
            runtime=runtime,
            num_threads=num_threads,
            what="verifier model",
            preserve_all_tensors=preserve_all_tensors,
        )
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1 or np.dtype(inputs[0]["dtype"]) != np.float32:
            raise ModelError(f"verifier model {self.model_path} must take one float32 waveform input")
        self._input = inputs[0]
        shape = [int(v) for v in self._input["shape"]]
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[0] != 1) or shape[-1] < 400:
            raise ModelError(f"verifier model input shape is {shape}, expected [samples] or [1, samples]")
        self.window_samples = shape[-1]

    def _open_with_head(self, head: EmbeddingHead, runtime: str | None, num_threads: int) -> None:
        """The model for a head: the head must have been fitted on this very file, and the tensor it
        reads (an intermediate one for YAMNet's embedding, hence every tensor kept) must match it."""
        if head.model_sha256 != self.sha256:
            raise ModelError(
                f"verifier head {head.path} was fitted on a model with sha256 {head.model_sha256[:12]}…, "
                f"{self.model_path} has {self.sha256[:12]}…: fit a head on this model (scream verifier-head)"
            )
        self.classes = []
        self.class_indices = []
        self._open(runtime, num_threads, preserve_all_tensors=True)
        found = [d for d in self._interpreter.get_tensor_details() if d["name"] == head.tensor]
        if not found:
            raise ModelError(f"verifier model {self.model_path} has no tensor {head.tensor!r} for head {head.path}")
        size = int(np.prod(found[0]["shape"]))
        if size != head.coef.size or np.dtype(found[0]["dtype"]) != np.float32:
            raise ModelError(
                f"verifier head {head.path} has {head.coef.size} weights, tensor {head.tensor!r} of "
                f"{self.model_path} holds {size} {np.dtype(found[0]['dtype'])} values"
            )
        self._output = found[0]

    @classmethod
    def from_config(cls, section: VerifierConfig) -> EventVerifier | None:
        """The `[verifier]` section's model, or None when none is configured."""
        if not section.model:
            return None
        return cls(
            os.path.expanduser(section.model),
            classes=list(section.classes),
            threshold=section.threshold,
            attempts=section.attempts,
            class_map=os.path.expanduser(section.class_map) if section.class_map else None,
            head=os.path.expanduser(section.head) if section.head else None,
            num_threads=section.threads,
        )

    def score(self, window: npt.NDArray[np.float32]) -> float:
        """The best of the chosen classes' scores (or the head's score) for one window of
        `window_samples` samples."""
        if window.shape != (self.window_samples,):
            raise ValueError(f"verifier window has shape {window.shape}, the model takes ({self.window_samples},)")
        started = time.perf_counter()
        self._interpreter.set_tensor(self._input["index"], window.reshape(self._input["shape"]).astype(np.float32))
        self._interpreter.invoke()
        values = self._interpreter.get_tensor(self._output["index"])
        score = self.head.score(values) if self.head is not None else float(np.max(values[0][self.class_indices]))
        self._invoke_s += time.perf_counter() - started
        self._windows += 1
        return score

    def pair_in(self, side: ModelSidecar) -> VerificationPair | None:
        """The settings `side`'s model recorded for this verdict: this file, and this head file or
        these classes."""
        head = self.head.sha256 if self.head is not None else ""
        return side.pair_for(self.sha256, head, tuple(self.classes))

    @property
    def verdict(self) -> str:
        """What the score is, for logs and status: the head's file or the classes."""
        return f"head {self.head.path.name}" if self.head is not None else ", ".join(self.classes)

    def judge(self, windows: list[npt.NDArray[np.float32]]) -> float:
        """A candidate event's verification score: the best over the windows that raised it. If the
        verifier fails, the candidate is confirmed (UNVERIFIED_SCORE) and the failure counted."""
        try:
            best = max((self.score(w) for w in windows), default=0.0)
        except (RuntimeError, ValueError) as exc:
            self._errors += 1
            self._last_error = str(exc)
            log.error("verifier failed, the candidate fires unverified: %s", exc)
            best = UNVERIFIED_SCORE
        self._checked += 1
        self._vetoed += int(best < self.threshold)
        self._last_score = best
        return best

    def status(self) -> dict[str, Any]:
        """For the health file: which model, what it checked and vetoed, and what that cost."""
        s = self.stats
        return {
            "model": str(self.model_path),
            "sha256": self.sha256,
            "classes": self.classes,
            "head": str(self.head.path) if self.head is not None else "",
            "threshold": self.threshold,
            "attempts": self.attempts,
            "settings": "the model's pair" if self.requested[0] == 0 else "config",
            "checked": s.checked,
            "vetoed": s.vetoed,
            "windows": s.windows,
            "invoke_ms_total": s.invoke_ms_total,
            "last_score": None if s.last_score is None else round(s.last_score, 4),
            "errors": s.errors,
            "last_error": s.last_error,
        }

    @property
    def stats(self) -> VerifierStats:
        return VerifierStats(
            checked=self._checked,
            vetoed=self._vetoed,
            windows=self._windows,
            invoke_ms_total=round(self._invoke_s * 1000, 3),
            last_score=self._last_score,
            errors=self._errors,
            last_error=self._last_error,
        )
