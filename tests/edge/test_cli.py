from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edge import synth
from edge.audio import write_wav
from edge.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    """A folder with a scene, a quiet room, and three broken files."""
    folder = tmp_path / "batch"
    (folder / "sub").mkdir(parents=True)
    audio, _ = synth.demo_scene(16000)
    write_wav(folder / "scene.wav", audio, 16000)
    write_wav(folder / "sub" / "quiet.wav", synth.room_tone(3.0, 8000, np.random.default_rng(0)), 8000)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_text("not audio\n" * 50)
    write_wav(folder / "short.wav", np.zeros(0, dtype=np.float32), 16000)
    return folder


def test_detect_batch_goes_on_past_bad_files(tiny_model: Path, batch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["detect", "--json", "--model", str(tiny_model), str(batch), str(batch / "missing.wav")])
    out, err = capsys.readouterr()
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.strip().splitlines())}
    assert status == 1
    assert rows["scene.wav"]["status"] == "ok" and rows["scene.wav"]["verdict"] == "scream"
    segments = rows["scene.wav"]["segments"]
    assert any(seg["start_s"] < 11.6 and seg["end_s"] > 10.0 and 0 < seg["peak_score"] <= 1 for seg in segments)
    assert rows["quiet.wav"]["status"] == "ok"
    for name, reason in (
        ("empty.wav", "empty file"),
        ("text.wav", "not a readable audio file"),
        ("short.wav", "no audio samples"),
        ("missing.wav", "no such file"),
    ):
        assert rows[name]["status"] == "error" and reason in rows[name]["error"]
    assert "3 file(s) analysed" not in err and "2 file(s) analysed, 4 failed" in err


def test_detect_text_output_and_exit_zero(tiny_model: Path, batch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["detect", "--model", str(tiny_model), "--threshold", "0.5", str(batch / "scene.wav")])
    out, _ = capsys.readouterr()
    assert status == 0
    assert "scene.wav: SCREAM" in out and " s  peak " in out


def test_detect_empty_directory_is_an_error(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["detect", "--model", str(tiny_model), str(tmp_path)]) == 1
    assert "no audio files found" in capsys.readouterr().err


def test_bad_model_fails_fast(model_copy: Path, batch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_copy.write_bytes(model_copy.read_bytes()[:100])
    assert main(["detect", "--model", str(model_copy), str(batch)]) == 2
    err = capsys.readouterr().err
    assert "sha256" in err and err.count("\n") == 1


def test_missing_default_model_says_how_to_train(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCREAM_MODEL", str(tmp_path / "none.tflite"))
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "no default model is installed yet" in err and "scream train --data" in err


def test_demo_prints_a_timeline(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--model", str(tiny_model)]) == 0
    out = capsys.readouterr().out
    assert "truth:" in out and "ALARM ON" in out and "alarm off" in out


def test_edge_path_never_imports_tensorflow(tiny_model: Path, batch: Path) -> None:
    """Run `scream detect` in a fresh interpreter where importing TensorFlow or Keras fails."""
    blocker = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "train", "scipy", "librosa"):
                    raise ImportError(f"{name} is blocked on the edge path")
        sys.meta_path.insert(0, Block())
        from edge.cli import main
        status = main(sys.argv[1:])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "scipy"))
        print("HEAVY", heavy)
        sys.exit(status)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", blocker, "detect", "--json", "--model", str(tiny_model), str(batch / "scene.wav")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[0])["verdict"] == "scream"
    assert "HEAVY []" in proc.stdout


def test_help_lists_subcommands_with_examples() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "detect", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 0 and "examples:" in proc.stdout and "exit status" in proc.stdout


def test_train_passes_the_operating_point_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorflow")
    import train.pipeline

    seen = {}
    monkeypatch.setattr(train.pipeline, "train", lambda data, out, *, config: seen.update(config=config, out=out))
    argv = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "m.tflite"), "--max-false-alarms-per-hour", "2"]
    assert main([*argv, "--min-event-recall", "0.7", "--max-latency", "0.6"]) == 0
    config = seen["config"]
    assert (config.max_false_alarms_per_hour, config.min_event_recall, config.max_latency_s) == (2.0, 0.7, 0.6)
    assert seen["out"] == str(tmp_path / "m")
    assert main([*argv[:5], "--members", "3", "--width", "16"]) == 0
    assert (seen["config"].members, seen["config"].width) == (3, 16)
    with pytest.raises(SystemExit):
        main([*argv[:5], "--members", "0"])


def test_check_model_reports_the_operating_point(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-model", str(tiny_model)]) == 0
    reported = json.loads(capsys.readouterr().out)
    side = json.loads(tiny_model.with_suffix(".json").read_text())["thresholds"]
    assert reported["ok"] is True
    expected = {k: side[k] for k in ("on", "off", "patience_windows", "patience_of")}
    assert reported["thresholds"] == {**expected, "smoothing_windows": side.get("smoothing_windows", 1)}


@pytest.mark.parametrize(
    ("command", "blocked"),
    [("train", "tensorflow"), ("crossval", "tensorflow"), ("evaluate", "matplotlib"), ("evaluate", "scipy")],
)
def test_train_commands_name_the_missing_extra_before_starting(command: str, blocked: str, tmp_path: Path) -> None:
    """Without the 'train' extra a train/ command stops at once with exit 2 and the pip line, not with a
    traceback after decoding the data set."""
    script = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == {blocked!r}:
                    raise ImportError(f"No module named {{name!r}}", name=name)
        sys.meta_path.insert(0, Block())
        from edge.cli import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    argv = [command, "--data", str(tmp_path), "--out", str(tmp_path / "out")]
    if command == "evaluate":
        argv += ["--model", str(tmp_path / "m.tflite")]
    proc = subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"scream {command} needs the Python module '{blocked}'" in proc.stderr
    assert "pip install 'scream-detector[train]'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["-1", "1.0", "0", "high"])
def test_threshold_outside_0_1_names_the_flag_and_the_range(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["detect", "x.wav"], ["demo"], ["explain", "x.wav", "--out", "x.png"]):
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--threshold", value])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "argument --threshold: must be" in err and "(0, 1)" in err and "decision parameters" not in err
