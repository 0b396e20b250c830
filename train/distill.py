"""Distillation: the student learns the teacher's view of the same augmented audio.

Every training excerpt (0.975 s at 16 kHz, exactly YAMNet's input) goes through the teacher after
augmentation, so the target is the teacher's embedding of what the student hears. The student gets
an auxiliary head (train/model.py `distill_dim`): a unit-length projection of its pooled features,
trained with a cosine loss towards the teacher's unit-length embedding, weighted
`TrainConfig.distill_weight` beside the scream loss. Early stopping and the learning-rate schedule
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
from train.corpus.teacher import RATE_HZ, WINDOW_SAMPLES, Teacher

FloatArray = npt.NDArray[np.float32]


def load_teacher(directory: str) -> Teacher:
    from train.corpus.teacher import YamnetTeacher

    return YamnetTeacher(Path(directory), threads=1)


class TeacherTargets:
    """The teacher's unit-length embedding of each excerpt of a batch."""

    def __init__(self, teacher: Teacher, features: FeatureParams, window_frames: int) -> None:
        length = (window_frames - 1) * features.hop_samples + features.window_samples
        if features.sample_rate_hz != RATE_HZ or length != WINDOW_SAMPLES:
            raise ValueError(
                f"distillation needs the student to hear what the teacher hears: {WINDOW_SAMPLES} samples at "
                f"{RATE_HZ} Hz, but the student's window is {length} samples at {features.sample_rate_hz} Hz"
            )
        self.teacher = teacher
        self.identity = teacher.identity
        probe = teacher.analyse(np.zeros(WINDOW_SAMPLES, np.float32)).embedding
        self.dim = int(probe.size)

    def embed(self, excerpts: list[FloatArray]) -> FloatArray:
        return np.stack([self.teacher.analyse(x).embedding for x in excerpts]).astype(np.float32)


def fit_distilled(model: Any, batches: Any, val: Any, config: Any) -> tuple[Any, Any, dict[str, list[float]]]:
    """Fit a two-output student (scream, teacher); returns its scream-only model, the batches and
    the history (with validation PR and ROC AUC of the scream output, as the plain recipe logs)."""
    import keras

    from train.model import scream_only
    from train.pipeline import _keras_sequence

    student = scream_only(model)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss={
            "scream": keras.losses.BinaryCrossentropy(label_smoothing=config.label_smoothing),
            "teacher": keras.losses.CosineSimilarity(),
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
