from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.cli import main


def test_quick_bench_reports_every_field(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--json", "--model", str(tiny_model)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"machine", "model", "stream", "invoke", "edge_peak_rss_mb", "logmel", "skipped"}
    assert [row["audio_s"] for row in result["logmel"]] == [1.0, 60.0]
    for row in result["logmel"]:
        assert row["numpy_ms"] > 0
        # librosa and TensorFlow are dev dependencies, so both comparisons ran and agree closely.
        assert row["librosa_max_abs_diff"] < 1e-3 and row["tf_signal_max_abs_diff"] < 1e-3
    assert result["skipped"] == []
    assert 0 < result["invoke"]["int8_invoke_ms"] < 50
    assert result["stream"]["audio_s"] == 120.0 and 0 < result["stream"]["real_time_factor"] < 1
    assert result["model"]["size_bytes"] == tiny_model.stat().st_size


def test_table_output(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--model", str(tiny_model)]) == 0
    out = capsys.readouterr().out
    assert "real-time factor" in out and "int8 invoke" in out and "numpy speed-up over librosa" in out
