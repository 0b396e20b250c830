"""Distillation end to end on synthetic audio with a small stand-in teacher: the student learns
the teacher's embedding or class scores beside the scream label, and the export keeps only the
scream output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from train.corpus.teacher import TeacherScores


class BandTeacher:
    """A deterministic stand-in for YAMNet: the unit vector of 256 log band energies of the audio
    as its embedding, and as its 8 class scores each eighth of the spectrum's share of the energy."""

    identity = "band-teacher:1"
    class_names = tuple(f"band {k}" for k in range(8))

    def __init__(self) -> None:
        self.calls = 0

    def analyse(self, samples: np.ndarray) -> TeacherScores:
        self.calls += 1
        spectrum = np.abs(np.fft.rfft(samples)) ** 2
        bands = np.log(np.array([band.sum() for band in np.array_split(spectrum, 256)]) + 1e-6)
        bands -= bands.mean()
        unit = bands / (np.linalg.norm(bands) + 1e-9)
        energy = np.array([part.sum() for part in np.array_split(spectrum, 8)])
        scores = (energy / (energy.sum() + 1e-12)).astype(np.float32)
        return TeacherScores(scores, scores, unit.astype(np.float32))


def output_shapes(model: Path) -> list[list[int]]:
    from edge.classifier import load_interpreter_class

    interpreter_class, _ = load_interpreter_class()
    interpreter = interpreter_class(model_path=str(model))
    interpreter.allocate_tensors()
    return [[int(v) for v in output["shape"]] for output in interpreter.get_output_details()]


def test_a_distilled_student_exports_the_same_single_output_model(tmp_path: Path, tiny_training) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("tensorflow")
    from edge.classifier import Classifier
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
    assert output_shapes(result.model_path) == [[1, 1]]  # the edge's usual model, no teacher head
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
    scores = TeacherTargets(BandTeacher(), FeatureParams(), window_frames=96, target="scores")
    tone = np.sin(2 * np.pi * 440 * np.arange(15600) / 16000).astype(np.float32)
    got = scores.embed([tone, tone])
    assert scores.dim == 8 and got.shape == (2, 8) and got[0].argmax() == 0 and np.isclose(got[0].sum(), 1.0)
    with pytest.raises(ValueError, match="unknown distillation target 'logits'"):
        TeacherTargets(BandTeacher(), FeatureParams(), window_frames=96, target="logits")


def test_a_student_distilled_on_class_scores_follows_them_and_exports_one_output(tmp_path: Path, tiny_training) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("tensorflow")
    from tests.helpers import make_synthetic_dataset, small_recipe
    from train.pipeline import train
    from train.report import _recipe_text

    data = make_synthetic_dataset(tmp_path / "data", per_class=45, seed=3)
    teacher = BandTeacher()
    config = small_recipe(
        tmp_path / "cache", epochs=4, steps=10, early_stopping_patience=4, distill_weight=2.0, distill_target="scores"
    )
    result = train(data, tmp_path / "distilled", config=config, teacher=teacher)
    (history,) = result.histories
    # Binary cross-entropy to the teacher's scores: it falls as the student learns them.
    assert len(history["teacher_loss"]) == 4 and history["teacher_loss"][-1] < history["teacher_loss"][0]
    assert output_shapes(result.model_path) == [[1, 1]]
    # Same size as the undistilled tiny model: the 8-class head (and its bias) is not exported.
    sidecar = json.loads(result.model_path.with_suffix(".json").read_text())
    assert abs(sidecar["size_bytes"] - tiny_training.sidecar["size_bytes"]) < 1000
    assert sidecar["training"]["config"]["distill_target"] == "scores"
    assert _recipe_text(sidecar["training"]["config"]).endswith("`--distill-weight 2`, `--distill-target scores`")
