from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge import synth
from edge.audio import write_wav
from edge.classifier import Classifier
from edge.config import parse_config
from edge.features import FeatureParams
from edge.pipeline import StreamingScorer, analyse_file


class EnergyScorer:
    """A transparent stand-in classifier: the mean log-mel of the window, squashed to (0, 1)."""

    input_shape = (96, 40)

    def score(self, window: np.ndarray) -> float:
        return float(1 / (1 + np.exp(-(window.mean() + 6))))


def _scores(scorer_factory, audio: np.ndarray, rate: int, chunk: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    scorer = StreamingScorer(scorer_factory(), FeatureParams(), hop_frames=25, source_rate_hz=rate)
    out = []
    for i in range(0, audio.size, chunk):
        out += scorer.push(audio[i : i + chunk])
    out += scorer.flush()
    return np.array([(s.index, s.start_s, s.end_s, s.score) for s in out])


@pytest.mark.parametrize("rate", [16000, 44100])
def test_scores_do_not_depend_on_chunk_size(tiny_model: Path, rate: int) -> None:
    audio, _ = synth.demo_scene(rate)
    audio = audio[: rate * 6]
    reference = _scores(lambda: Classifier(tiny_model), audio, rate, audio.size)
    for chunk in (1 + rate // 100, 4096, rate // 4 + 3):
        got = _scores(lambda: Classifier(tiny_model), audio, rate, chunk)
        assert got.shape == reference.shape
        np.testing.assert_array_equal(got[:, :3], reference[:, :3])
        # int8 inputs: a log-mel value on a quantisation boundary may flip by one step.
        np.testing.assert_allclose(got[:, 3], reference[:, 3], atol=0.02)


def test_window_timing_and_tail_padding() -> None:
    rate = 16000
    audio = np.zeros(int(2.1 * rate), dtype=np.float32)
    scores = _scores(EnergyScorer, audio, rate, 1000)
    window_s = (95 * 160 + 400) / rate
    np.testing.assert_allclose(scores[:, 1], np.arange(len(scores)) * 0.25)
    np.testing.assert_allclose(scores[:, 2] - scores[:, 1], window_s)
    assert scores[-1, 2] >= 2.1 > scores[-2, 2]  # the tail is covered by exactly one padded window


def test_short_clip_still_gets_one_window() -> None:
    scores = _scores(EnergyScorer, np.ones(3000, dtype=np.float32) * 0.1, 16000, 3000)
    assert len(scores) == 1


def test_file_analysis_finds_the_scream_in_a_scene(tiny_model: Path, tmp_path: Path) -> None:
    rate = 22050
    audio, truth = synth.demo_scene(rate)
    path = tmp_path / "scene.wav"
    write_wav(path, np.stack([audio, audio], axis=1), rate)
    classifier = Classifier(tiny_model)
    one_of_one = parse_config({"detector": {"patience_windows": 1, "patience_of": 1, "smoothing_windows": 1}})
    report = analyse_file(path, classifier, one_of_one)
    scream = next(t for t in truth if t.kind == "scream")
    assert report.is_scream
    assert any(e.start_s < scream.end_s and (e.end_s or 0) > scream.start_s for e in report.events)
    data = report.to_json()
    assert data["verdict"] == "scream" and data["channels"] == 2 and data["sample_rate_hz"] == rate
    assert len(data["segments"]) == len(report.events)
