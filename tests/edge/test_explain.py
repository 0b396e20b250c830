from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from edge import synth
from edge.audio import write_wav
from edge.cli import main


@pytest.fixture
def scene_wav(tmp_path: Path) -> Path:
    audio, _ = synth.demo_scene(22050)
    path = tmp_path / "scene.wav"
    write_wav(path, audio, 22050)
    return path


def test_explain_writes_a_png_of_the_scene(
    tiny_model: Path, scene_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[schedule]]\nname = "night"\nstart = "22:00"\nend = "07:00"\non_threshold = 0.9\n')
    out = tmp_path / "scene.png"
    status = main(
        [
            "explain",
            str(scene_wav),
            "--out",
            str(out),
            "--model",
            str(tiny_model),
            "--config",
            str(config),
            "--start",
            "2026-11-24T21:59:55",
            "--json",
        ]
    )
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1200, 600)
    window_s, hop_s = (95 * 160 + 400) / 16000, 0.25
    assert result["windows"] == 1 + int(np.ceil((20.0 - window_s) / hop_s))  # the tail padded into one window
    assert result["events"] and all(0 <= e["start_s"] < e["end_s"] for e in result["events"])


def test_explain_uses_the_configs_detector_settings(
    tiny_model: Path, scene_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[detector]\non_threshold = 0.97\npatience_windows = 2\npatience_of = 3\nsmoothing_windows = 2\n")
    args = ["explain", str(scene_wav), "--out", str(tmp_path / "x.png"), "--model", str(tiny_model), "--json"]
    assert main([*args, "--config", str(config)]) == 0
    decisions = json.loads(capsys.readouterr().out)["decisions"]
    assert (decisions["on"], decisions["patience_windows"], decisions["patience_of"]) == (0.97, 2, 3)
    assert decisions["smoothing_windows"] == 2
    assert main(args) == 0  # no config: the model's own operating point
    side = json.loads(tiny_model.with_suffix(".json").read_text())["thresholds"]
    decisions = json.loads(capsys.readouterr().out)["decisions"]
    assert (decisions["on"], decisions["patience_windows"], decisions["patience_of"]) == (
        side["on"],
        side["patience_windows"],
        side["patience_of"],
    )


def test_explain_timeline_applies_schedules(tiny_model: Path, scene_wav: Path) -> None:
    import datetime as dt

    from edge.classifier import Classifier
    from edge.config import parse_config
    from edge.explain import build_timeline

    classifier = Classifier(tiny_model)
    config = parse_config({"schedule": [{"name": "night", "start": "22:00", "end": "07:00", "on_threshold": 0.99}]})
    timeline = build_timeline(scene_wav, classifier, config, dt.datetime(2026, 11, 24, 21, 59, 50))
    ends = np.array([w.end_s for w in timeline.windows])
    names = np.array([w.schedule for w in timeline.windows])
    assert set(names[ends < 10]) == {""} and set(names[ends >= 10.5]) == {"night"}
    assert np.allclose(np.array([w.on_threshold for w in timeline.windows])[ends >= 10.5], 0.99)
    assert timeline.logmel.shape[1] == 40


def test_explain_timeline_shows_the_smoothed_score_the_thresholds_meet(tiny_model: Path, scene_wav: Path) -> None:
    from edge.classifier import Classifier
    from edge.config import parse_config
    from edge.explain import build_timeline

    classifier = Classifier(tiny_model)
    plain = {"patience_windows": 1, "patience_of": 1, "loudness_gate_dbfs": -120.0}
    raw = build_timeline(scene_wav, classifier, parse_config({"detector": {**plain, "smoothing_windows": 1}}))
    assert [w.decision_score for w in raw.windows] == [w.score for w in raw.windows]
    smoothed = build_timeline(scene_wav, classifier, parse_config({"detector": {**plain, "smoothing_windows": 3}}))
    scores = np.array([w.score for w in smoothed.windows])
    means = [scores[max(0, i - 2) : i + 1].mean() for i in range(scores.size)]
    np.testing.assert_allclose([w.decision_score for w in smoothed.windows], means, rtol=1e-9)


def test_explain_shows_the_gate_listen_applies(tiny_model: Path, tmp_path: Path) -> None:
    """A scream-like sound far below the loudness gate: the timeline holds its windows back, as
    `listen` would, and says so."""
    from edge.classifier import Classifier
    from edge.config import parse_config
    from edge.explain import build_timeline

    rate = 16000
    rng = np.random.default_rng(4)
    quiet = np.concatenate([np.zeros(rate, np.float32), synth.scream_like(2.0, rate, rng, level=1e-4)])
    wav = tmp_path / "quiet.wav"
    write_wav(wav, np.concatenate([quiet, np.zeros(rate, np.float32)]), rate)
    classifier = Classifier(tiny_model)
    gated = build_timeline(wav, classifier)
    assert max(w.level_dbfs for w in gated.windows) < -70.0  # every window under the default gate
    assert all(w.gated and w.decision_score == 0.0 for w in gated.windows) and gated.events == []
    ungated = build_timeline(wav, classifier, parse_config({"detector": {"loudness_gate_dbfs": -120.0}}))
    heard = [w for w in ungated.windows if w.level_dbfs >= -120.0]
    assert len(heard) >= 4 and not any(w.gated for w in heard)
    assert [w.score for w in ungated.windows] == [w.score for w in gated.windows]  # same scores, decided otherwise


def test_explain_without_matplotlib_names_the_extra(
    tiny_model: Path,
    scene_wav: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    status = main(["explain", str(scene_wav), "--out", str(tmp_path / "x.png"), "--model", str(tiny_model)])
    assert status == 2
    assert "scream-detector[plot]" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
