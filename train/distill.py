"""Distillation: the student learns the teacher's view of the same augmented audio.

Every training excerpt (0.975 s at 16 kHz, exactly YAMNet's input) goes through the teacher after
augmentation, so the target is the teacher's view of what the student hears, one of two
(`TrainConfig.distill_target`):

- "embedding": YAMNet's unit-length 1024-d embedding. The student's auxiliary head
  (train/model.py `distill_dim`) is a unit-length projection of its pooled features, trained with a
  cosine loss.
- "scores": YAMNet's 521 AudioSet class scores (sigmoid probabilities). The auxiliary head is one
  sigmoid per class on the pooled features, trained with the binary cross-entropy to the teacher's
  scores (soft labels), averaged over classes: what the teacher hears in the excerpt, named (a sigh,
  a baby's cry, a ringtone), not only a point in its embedding space.

Either is weighted `TrainConfig.distill_weight` beside the scream loss. Early stopping and the learning-rate schedule
follow validation PR AUC of the scream output alone, and export keeps only that output
(`scream_only`): the edge runs the same single-output int8 model, and never the teacher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.features import FeatureParams
from train import metrics
from train.corpus.teacher import RATE_HZ, WINDOW_SAMPLES, Teacher, TeacherScores

FloatArray = npt.NDArray[np.float32]


def load_teacher(directory: str) -> Teacher:
    from train.corpus.teacher import YamnetTeacher

    return YamnetTeacher(Path(directory), threads=1)


TARGETS = ("embedding", "scores")


class TeacherTargets:
    """The teacher's unit-length embedding, or its class scores, of each excerpt of a batch."""

    def __init__(
        self, teacher: Teacher, features: FeatureParams, window_frames: int, target: str = "embedding"
    ) -> None:
        if target not in TARGETS:
            raise ValueError(f"unknown distillation target {target!r}: expected one of {', '.join(TARGETS)}")
        length = (window_frames - 1) * features.hop_samples + features.window_samples
        if features.sample_rate_hz != RATE_HZ or length != WINDOW_SAMPLES:
            raise ValueError(
                f"distillation needs the student to hear what the teacher hears: {WINDOW_SAMPLES} samples at "
                f"{RATE_HZ} Hz, but the student's window is {length} samples at {features.sample_rate_hz} Hz"
            )
        self.teacher = teacher
        self.identity = teacher.identity
        self.target = target
        self.dim = int(self._of(teacher.analyse(np.zeros(WINDOW_SAMPLES, np.float32))).size)

    def _of(self, analysed: TeacherScores) -> FloatArray:
        # One teacher window per excerpt, so its maximum over windows is its score.
        return analysed.embedding if self.target == "embedding" else analysed.max_scores

    def describe(self) -> str:
        return f"{self.dim}-d embedding" if self.target == "embedding" else f"{self.dim} class scores"

    def embed(self, excerpts: list[FloatArray]) -> FloatArray:
        """The target of each excerpt: (n, dim)."""
        return np.stack([self._of(self.teacher.analyse(x)) for x in excerpts]).astype(np.float32)


def fit_distilled(model: Any, batches: Any, val: Any, config: Any) -> tuple[Any, Any, dict[str, list[float]]]:
    """Fit a two-output student (scream, teacher); returns its scream-only model, the batches and
    the history (with validation PR and ROC AUC of the scream output, as the plain recipe logs)."""
    import keras

    from train.model import scream_only
    from train.pipeline import _keras_sequence

    student = scream_only(model)
    teacher_loss = (
        keras.losses.CosineSimilarity() if config.distill_target == "embedding" else keras.losses.BinaryCrossentropy()
    )
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss={
            "scream": keras.losses.BinaryCrossentropy(label_smoothing=config.label_smoothing),
            "teacher": teacher_loss,
        },
        loss_weights={"scream": 1.0, "teacher": config.distill_weight},
    )

    class ScreamValidation(keras.callbacks.Callback):  # type: ignore[misc]
        """Validation PR and ROC AUC of the scream output, into the logs the other callbacks read."""

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            scores = student.predict(val.windows[..., None], batch_size=256, verbose=0).reshape(-1)
            if logs is not None:
                logs["val_pr_auc"] = metrics.average_precision(val.labels, scores)
                logs["val_roc_auc"] = metrics.roc_auc(val.labels, scores)

    callbacks = [
        ScreamValidation(),  # first: the callbacks after it read what it logs
        keras.callbacks.EarlyStopping(
            monitor="val_pr_auc", mode="max", patience=config.early_stopping_patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(monitor="val_pr_auc", mode="max", factor=0.5, patience=3),
    ]
    history = model.fit(
        _keras_sequence(batches, config.steps_per_epoch),
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=config.verbose,
    )
    return student, batches, {k: [float(v) for v in vals] for k, vals in history.history.items()}
