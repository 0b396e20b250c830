from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge.bench import format_table
from edge.cli import main
from edge.detector import DecisionParams
from tests.helpers import write_stand_in_head


@pytest.fixture(scope="module")
def quick_result(tiny_model: Path) -> dict[str, Any]:
    capture = pytest.MonkeyPatch()
    import io
    import sys

    buffer = io.StringIO()
    capture.setattr(sys, "stdout", buffer)
    try:
        assert main(["bench", "--quick", "--json", "--model", str(tiny_model)]) == 0
    finally:
        capture.undo()
    return dict(json.loads(buffer.getvalue()))


def test_quick_bench_reports_every_field(quick_result: dict[str, Any], tiny_model: Path) -> None:
    result = quick_result
    assert set(result) >= {"machine", "model", "stream", "invoke", "edge_peak_rss_mb", "logmel", "skipped", "listen"}
    listen = result["listen"]
    assert listen["listen_peak_rss_mb"] > 10 and 0 < listen["listen_cpu_share"] < 1
    assert listen["screams"] == 1 and "onset_to_led_s" in listen and "onset_to_led_fast_s" in listen
    for key in ("onset_to_led", "onset_to_led_fast"):  # the tiny model fires on the bench's scream-like sound
        assert listen[f"{key}_s"] is not None, key
        low, high = listen[f"{key}_range_s"]
        assert 0 < low <= listen[f"{key}_s"] <= high < 5.0
    assert [row["audio_s"] for row in result["logmel"]] == [1.0, 60.0]
    for row in result["logmel"]:
        assert row["numpy_ms"] > 0
        # librosa and TensorFlow are dev dependencies, so both comparisons ran and agree closely.
        assert row["librosa_max_abs_diff"] < 1e-3 and row["tf_signal_max_abs_diff"] < 1e-3
    assert result["skipped"] == []
    assert 0 < result["invoke"]["int8_invoke_ms"] < 50
    review = result["review"]
    page = Path(__file__).resolve().parents[2] / "edge" / "review_page"
    assert review["page_bytes"] == sum(f.stat().st_size for f in page.iterdir())  # the three files, served whole
    assert review["clips"] == 20 and review["clip_bytes"] == 44 + 2 * 5 * 16000
    assert review["listing_bytes"] > 20 * 200 and review["timeline_bytes"] > 1000
    for key in ("page_ms", "listing_ms", "clip_ms", "timeline_first_ms", "timeline_cached_ms", "label_ms"):
        assert 0 < review[key] < 10_000, key
    assert result["invoke"]["float_invoke_ms"] > 0  # the training run keeps a float twin beside the model
    assert result["stream"]["audio_s"] == 120.0 and 0 < result["stream"]["real_time_factor"] < 1
    side = json.loads(tiny_model.with_suffix(".json").read_text())["thresholds"]
    assert result["stream"]["hop_ms"] == 250 and result["stream"]["decisions"] == (
        DecisionParams(
            patience_windows=side["patience_windows"],
            patience_of=side["patience_of"],
            smoothing_windows=side.get("smoothing_windows", 1),
        ).describe()
    )
    rows = result["stream_faster"]
    # The model's patience at a 100 ms hop, then 1 of 1 unless that is what the model already uses.
    assert len(rows) == (1 if (side["patience_windows"], side["patience_of"]) == (1, 1) else 2)
    assert all(row["hop_ms"] == 100 and 0 < row["real_time_factor"] < 1 for row in rows)
    assert rows[-1]["decisions"] == "1 of 1 window"
    assert result["model"]["size_bytes"] == tiny_model.stat().st_size


def test_table_output(quick_result: dict[str, Any]) -> None:
    table = format_table(quick_result)
    assert "real-time factor" in table and "int8 invoke" in table and "numpy speed-up over librosa" in table
    assert "float / int8 time" in table
    assert "onset to decision, 250 ms hop" in table and "onset to decision, 100 ms hop, 1 of 1 window (s)" in table
    assert "onset to LED" in table and "CPU share" in table and "with hop_ms = 100 and 1 of 1 window" in table


def test_bench_scenes_put_screams_at_random_phases_of_the_window_grid() -> None:
    """Latency depends on where an onset falls between window ends, so the benchmark scenes spread
    their onsets over every phase instead of starting each scream on a whole second."""
    import numpy as np

    from edge.bench import scene_seconds, scream_onsets, stream_scream_onsets
    from edge.synth import room_tone, scream_like, speech_like

    onsets = scream_onsets(6, 3.0, 10.0)
    assert onsets == scream_onsets(6, 3.0, 10.0)  # seeded
    assert all(3.0 + 10 * k <= t < 4.0 + 10 * k for k, t in enumerate(onsets))
    assert len({round(t % 0.25, 2) for t in onsets}) >= 4
    # The one-second blocks hold exactly the scene built in one piece, the scream at its onset.
    rate = 8000
    blocks = np.concatenate(list(scene_seconds(1, rate)))
    rng = np.random.default_rng(3)
    first, second, scream = speech_like(3.0, rate, rng), speech_like(3.0, rate, rng), scream_like(1.5, rate, rng)
    expected = np.concatenate([room_tone(1.0, rate, rng) for _ in range(60)])
    assert stream_scream_onsets(1) == scream_onsets(1, 45.0, 60.0)
    at = round(stream_scream_onsets(1)[0] * rate)
    for start, clip in ((5 * rate, first), (25 * rate, second), (at, scream)):
        expected[start : start + clip.size] += clip
    np.testing.assert_array_equal(blocks, expected)


def test_bench_measures_the_second_stage(
    tiny_model: Path, stand_in_verifier: Path, quick_result: dict[str, Any], tmp_path: Path
) -> None:
    """`scream bench --verifier`: one verdict per candidate of the stream, whose count is the
    candidates the same stream raises without a verifier; its cost per verdict and per hour; with
    `--verifier-attempts`, the same candidates and more verdicts for the vetoed ones."""
    from edge.bench import PI4_VERIFIER_WINDOW_MS, bench_verifier, scene_seconds
    from edge.classifier import Classifier
    from edge.detector import EventStarted
    from edge.pipeline import DetectionPipeline, detection_settings

    classifier = Classifier(tiny_model)
    decisions, hop = detection_settings(classifier.sidecar)
    plain = DetectionPipeline(classifier, classifier.sidecar.features, decisions, hop_frames=hop, source_rate_hz=48000)
    candidates = sum(
        isinstance(t, EventStarted)
        for block in scene_seconds(2, 48000)
        for i in range(0, block.size, 4800)
        for t in plain.push(block[i : i + 4800]).transitions
    )
    row = bench_verifier(stand_in_verifier, classifier, decisions, hop_frames=hop, minutes=2, repeats=3)
    assert candidates > 0 and row["candidates"] == candidates and row["candidates_per_hour"] == candidates * 30
    assert row["verdicts_per_hour"] == row["candidates_per_hour"] and row["attempts"] == 1
    assert row["windows_per_verdict"] >= 1 and row["invoke_ms"] > 0 and row["load_ms"] > 0
    assert row["ms_per_verdict"] == pytest.approx(row["windows_per_verdict"] * row["invoke_ms"], rel=0.01)
    assert row["pi4_ms_per_verdict"] == pytest.approx(row["windows_per_verdict"] * PI4_VERIFIER_WINDOW_MS, rel=0.01)
    assert row["verifier_ms_per_hour"] == pytest.approx(
        row["verdicts_per_hour"] * row["ms_per_verdict"], rel=0.02, abs=0.05
    )
    assert row["rss_added_mb"] >= 0 and 0 < row["real_time_factor_with_verifier"] < 1
    assert quick_result["verifier"] is None
    assert "verifier: not measured (scream bench --verifier MODEL.tflite)" in format_table(quick_result)
    table = format_table({**quick_result, "verifier": row})
    assert f"verifier standin.tflite ({stand_in_verifier.stat().st_size} bytes): load (ms)" in table
    # With a head (`--verifier-head`): the same candidates, each scored by the head; said in the table.
    head = write_stand_in_head(tmp_path / "head.json", stand_in_verifier, [0.0, 1.0, 0.0, 0.0])
    headed = bench_verifier(stand_in_verifier, classifier, decisions, hop_frames=hop, minutes=2, repeats=3, head=head)
    assert headed["head"] == str(head) and headed["classes"] == [] and headed["candidates"] == candidates
    table = format_table({**quick_result, "verifier": headed})
    assert f"verifier standin.tflite ({stand_in_verifier.stat().st_size} bytes, head head.json): load (ms)" in table
    assert "cost per verdict, added before its alarm (ms)" in table
    # Up to 4 verdicts a candidate: the same candidates (verdicts never change them), the vetoed ones
    # judged again, every verdict counted in the cost per hour. A head that turns everything down
    # (an intercept far below 0) vetoes every candidate, so each is judged at every fresh hit.
    strict = write_stand_in_head(tmp_path / "strict.json", stand_in_verifier, [0.0, 0.0, 0.0, 0.0], intercept=-9.0)
    once = bench_verifier(stand_in_verifier, classifier, decisions, hop_frames=hop, minutes=2, repeats=3, head=strict)
    again = bench_verifier(
        stand_in_verifier, classifier, decisions, hop_frames=hop, minutes=2, repeats=3, head=strict, attempts=4
    )
    assert once["candidates"] == again["candidates"] == candidates and again["attempts"] == 4
    assert once["verdicts_per_hour"] == candidates * 30 < again["verdicts_per_hour"] <= 4 * candidates * 30
    assert again["verifier_ms_per_hour"] == pytest.approx(
        again["verdicts_per_hour"] * again["ms_per_verdict"], rel=0.02, abs=0.05
    )
    assert "verdicts per hour (up to 4 per candidate)" in format_table({**quick_result, "verifier": again})
