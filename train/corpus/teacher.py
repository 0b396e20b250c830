"""The teacher: YAMNet (AudioSet, 521 classes) as TF-Lite, for auditing labels at training time.

It runs on the LiteRT interpreter the edge already uses. A clip is cut into YAMNet's 0.975 s
windows every 0.48 s; per clip we keep the class scores' maximum and mean over windows and the
mean 1024-d embedding. The edge package never imports this module.
"""

from __future__ import annotations

import csv
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge.classifier import load_interpreter_class, sha256_file
from edge.errors import ScreamError
from train.data import write_atomically

RATE_HZ = 16000
WINDOW_SAMPLES = 15600  # YAMNet's input: 0.975 s at 16 kHz
HOP_SAMPLES = 7680  # 0.48 s, YAMNet's own patch hop
EMBEDDING_TENSOR = "yamnet_frames/global_average_pooling2d/Mean"
# AudioSet classes the audit reads by name (indices from yamnet_class_map.csv).
SCREAM_CLASSES = {"scream": 11, "yell": 9, "shout": 6, "children_shouting": 10}


class TeacherError(ScreamError, RuntimeError):
    """The teacher model cannot be loaded or run."""


@dataclass(frozen=True)
class TeacherScores:
    """What the teacher says of one clip."""

    max_scores: npt.NDArray[np.float32]  # [classes], the maximum over windows
    mean_scores: npt.NDArray[np.float32]  # [classes], the mean over windows
    embedding: npt.NDArray[np.float32]  # [dim], mean over windows, L2-normalised

    def top(self, names: list[str], k: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(-self.max_scores)[:k]
        return [(names[i], float(self.max_scores[i])) for i in order]


class Teacher(Protocol):
    """Anything that scores 16 kHz mono audio like YAMNet: the real model or a test stand-in."""

    identity: str  # changes when the model changes, so cached scores are not reused across models
    class_names: list[str]

    def analyse(self, samples: npt.NDArray[np.float32]) -> TeacherScores: ...


def clip_windows(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """YAMNet windows of a clip: every hop, the last one padded with silence; at least one."""
    count = 1 + max(0, int(np.ceil((samples.size - WINDOW_SAMPLES) / HOP_SAMPLES)))
    padded = np.zeros((count - 1) * HOP_SAMPLES + WINDOW_SAMPLES, dtype=np.float32)
    padded[: min(samples.size, padded.size)] = samples[: padded.size]
    index = np.arange(WINDOW_SAMPLES)[None, :] + HOP_SAMPLES * np.arange(count)[:, None]
    return padded[index]


class YamnetTeacher:
    """YAMNet from `yamnet.tflite` and its `yamnet_class_map.csv` (../shared/models/yamnet/)."""

    def __init__(self, model_dir: str | Path, *, threads: int = 2) -> None:
        folder = Path(model_dir)
        model, class_map = folder / "yamnet.tflite", folder / "yamnet_class_map.csv"
        for path in (model, class_map):
            if not path.is_file():
                raise TeacherError(f"teacher file {path} not found (YAMNet: see ../shared/models/yamnet/README.md)")
        with class_map.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        self.class_names = [row["display_name"] for row in rows]
        self.identity = "yamnet:" + sha256_file(model)[:16]
        interpreter_class, _ = load_interpreter_class()
        try:
            with warnings.catch_warnings():  # LiteRT warns that preserving every tensor costs memory (4 MB here)
                warnings.simplefilter("ignore", UserWarning)
                self._interpreter: Any = interpreter_class(
                    model_path=str(model), num_threads=threads, experimental_preserve_all_tensors=True
                )
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise TeacherError(f"{model}: not a loadable TF-Lite model ({exc})") from exc
        details = self._interpreter.get_output_details()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._input_shape = tuple(self._interpreter.get_input_details()[0]["shape"])
        self._scores = next(d["index"] for d in details if tuple(d["shape"]) == (1, len(self.class_names)))
        embedding = [d for d in self._interpreter.get_tensor_details() if d["name"] == EMBEDDING_TENSOR]
        if not embedding:
            raise TeacherError(f"{model}: has no tensor {EMBEDDING_TENSOR!r} (not the YAMNet this code reads)")
        self._embedding = embedding[0]["index"]

    def analyse(self, samples: npt.NDArray[np.float32]) -> TeacherScores:
        scores, embeddings = [], []
        for window in clip_windows(samples):
            self._interpreter.set_tensor(self._input, window.reshape(self._input_shape))
            self._interpreter.invoke()
            scores.append(self._interpreter.get_tensor(self._scores)[0].copy())
            embeddings.append(self._interpreter.get_tensor(self._embedding)[0].copy())
        stack = np.asarray(scores, dtype=np.float32)
        return TeacherScores(stack.max(axis=0), stack.mean(axis=0), _unit(np.mean(embeddings, axis=0)))


def _unit(vector: npt.ArrayLike) -> npt.NDArray[np.float32]:
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 else array


class ScoreCache:
    """Teacher scores on disk by audio sha1 and teacher identity, so a rebuild scores nothing twice."""

    def __init__(self, directory: str | Path, identity: str) -> None:
        self.directory = Path(directory) / hashlib.sha1(identity.encode()).hexdigest()[:12]
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, sha1: str, excerpt: str) -> Path:
        return self.directory / f"{sha1}{('-' + excerpt) if excerpt else ''}.npz"

    def get(self, sha1: str, excerpt: str = "") -> TeacherScores | None:
        path = self._path(sha1, excerpt)
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                return TeacherScores(data["max_scores"], data["mean_scores"], data["embedding"])
        except (OSError, ValueError, KeyError):
            return None  # a torn cache file is scored again

    def put(self, sha1: str, scores: TeacherScores, excerpt: str = "") -> None:
        path = self._path(sha1, excerpt)
        write_atomically(
            path,
            lambda f: np.savez(
                f, max_scores=scores.max_scores, mean_scores=scores.mean_scores, embedding=scores.embedding
            ),
        )
