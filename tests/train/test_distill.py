"""Distillation end to end on synthetic audio with a small stand-in teacher: the student learns
the teacher's embedding beside the scream label, and the export keeps only the scream output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from train.corpus.teacher import TeacherScores


class BandTeacher:
    """A deterministic stand-in for YAMNet: the unit vector of 256 log band energies of the audio."""

    identity = "band-teacher:1"
    class_names = ("scream", "other")

    def __init__(self) -> None:
        self.calls = 0

    def analyse(self, samples: np.ndarray) -> TeacherScores:
        self.calls += 1
        spectrum = np.abs(np.fft.rfft(samples)) ** 2
        bands = np.log(np.array([band.sum() for band in np.array_split(spectrum, 256)]) + 1e-6)
        bands -= bands.mean()
        unit = bands / (np.linalg.norm(bands) + 1e-9)
        scores = np.zeros(2, np.float32)
        return TeacherScores(scores, scores, unit.astype(np.float32))


def test_a_distilled_student_exports_the_same_single_output_model(tmp_path: Path, tiny_training) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("tensorflow")
    from edge.classifier import Classifier, load_interpreter_class
    from tests.helpers import make_synthetic_dataset, small_recipe
    from train.pipeline import train

    # More clips than the shared synthetic set: the export's int8 check needs 100+ test windows.
    data = make_synthetic_dataset(tmp_path / "data", per_class=45, seed=3)

    teacher = BandTeacher()
    config = small_recipe(
        tmp_path / "cache", epochs=4, steps=10, members=2, early_stopping_patience=3, distill_weight=0.5
    )
    result = train(data, tmp_path / "distilled", config=config, teacher=teacher)
    assert teacher.calls >= 4 * 10 * 32  # every excerpt of every step went through the teacher
    for history in result.histories:
        assert {"teacher_loss", "scream_loss", "val_pr_auc"} <= set(history) and len(history["val_pr_auc"]) >= 1
        assert history["teacher_loss"][-1] < 0  # cosine similarity, negated: the student follows the teacher
    # The export is the edge's usual model: one int8 input, one [1, 1] output, no teacher head.
    interpreter_class, _ = load_interpreter_class()
    interpreter = interpreter_class(model_path=str(result.model_path))
    interpreter.allocate_tensors()
    outputs = interpreter.get_output_details()
    assert len(outputs) == 1 and [int(v) for v in outputs[0]["shape"]] == [1, 1]
    sidecar = json.loads(result.model_path.with_suffix(".json").read_text())
    assert sidecar["training"]["config"]["distill_weight"] == 0.5
    # Two members of width 8 without the 256-d head (8,192 weights each): twice the tiny member, not more.
    assert sidecar["size_bytes"] < 2 * tiny_training.sidecar["size_bytes"] + 4000
    classifier = Classifier(result.model_path)
    score = classifier.score(np.full(classifier.input_shape, -8.0, np.float32))
    assert 0.0 <= score <= 1.0


def test_distillation_needs_the_teachers_window() -> None:
    from edge.features import FeatureParams
    from train.distill import TeacherTargets

    with pytest.raises(ValueError, match="15600 samples at 16000 Hz"):
        TeacherTargets(BandTeacher(), FeatureParams(), window_frames=64)
    targets = TeacherTargets(BandTeacher(), FeatureParams(), window_frames=96)
    assert targets.dim == 256 and targets.embed([np.ones(15600, np.float32)] * 2).shape == (2, 256)
