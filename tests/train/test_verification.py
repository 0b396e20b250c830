"""`scream verification`: the second stage measured offline exactly as `listen` runs it, its settings
chosen on validation and replayed on test."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge import synth
from edge.classifier import Classifier, sha256_file
from edge.cli import main
from edge.config import Config, parse_config
from edge.detector import EventStarted
from edge.errors import ScreamError
from edge.pipeline import DetectionPipeline, chunked, detection_settings
from edge.verifier import EventVerifier
from tests.helpers import stand_in_screaming
from train.scenes import decide, decide_verdicts, score_stream
from train.verification import Judged, chosen_pair, judge_candidates, record_pair

RATE = 16000


def scene_with_screams(seed: int) -> np.ndarray:
    """Room tone with scream-like sounds at four levels: the quieter ones fail the stand-in verifier."""
    rng = np.random.default_rng(seed)
    audio = synth.room_tone(28.0, RATE, rng, level=0.0005)
    for at, level in ((2.0, 0.05), (9.0, 0.5), (16.0, 0.1), (23.0, 0.8)):
        scream = synth.scream_like(1.5, RATE, rng, level=level)
        audio[int(at * RATE) : int(at * RATE) + scream.size] += scream
    return audio


def quiet_then_loud(seed: int) -> np.ndarray:
    """`scene_with_screams` and then a quiet scream running straight into a loud one: one candidate
    that the stand-in turns down on its first windows and passes on its later ones."""
    rng = np.random.default_rng(seed + 1)
    tail = synth.room_tone(8.0, RATE, rng, level=0.0005)
    quiet, loud = synth.scream_like(1.2, RATE, rng, level=0.05), synth.scream_like(1.5, RATE, rng, level=0.8)
    tail[int(1.0 * RATE) : int(1.0 * RATE) + quiet.size] += quiet
    tail[int(2.2 * RATE) : int(2.2 * RATE) + loud.size] += loud
    return np.concatenate([scene_with_screams(seed), tail]).astype(np.float32)


@pytest.mark.parametrize("attempts", [1, 3])
def test_offline_verdicts_are_the_live_pipelines(tiny_model: Path, stand_in_verifier: Path, attempts: int) -> None:
    """The same audio through `listen`'s pipeline with the verifier, and through evaluate's scoring,
    decisions and train/verification.py's judging: the same candidates, verdicts and fired events,
    with one verdict per candidate or with later verdicts for a vetoed one (`[verifier] attempts`)."""
    classifier = Classifier(tiny_model)
    audio = quiet_then_loud(11)
    live_verifier = EventVerifier(stand_in_verifier, classes=["Screaming"], threshold=0.5, attempts=attempts)
    pipeline = DetectionPipeline.for_model(classifier, Config(), source_rate_hz=RATE, verifier=live_verifier)
    live = pipeline.run(chunked(audio, 1600))
    side = classifier.sidecar
    decisions, hop = detection_settings(side)
    scored = score_stream(classifier, audio)
    starts, spans, asked, seconds = decide_verdicts(scored, decisions, attempts)
    plain_starts, plain_spans, _ = decide(scored, decisions)
    assert spans == plain_spans and [s.event.start_s for s in starts] == [s.event.start_s for s in plain_starts]
    offline_verifier = EventVerifier(stand_in_verifier, classes=["Screaming"], threshold=0.5, attempts=attempts)
    verdicts = judge_candidates(
        offline_verifier, audio, asked, hop_s=hop * side.features.hop_samples / RATE, window_s=side.window_s, rate=RATE
    )
    judged = Judged(starts, spans, verdicts, [[d for _, d in a] for a in asked], [], seconds)
    fired, fired_spans = judged.kept(0.5)
    candidates = sorted(live.events + live.vetoed, key=lambda e: e.start_s)
    assert len(candidates) == len(starts) >= 4
    assert [e.start_s for e in candidates] == [s.event.start_s for s in starts]
    assert [asked[i][0] for i in range(len(starts))] == [(s.event.start_s, s.event.detected_s) for s in plain_starts]
    assert [(e.start_s, e.end_s) for e in live.events] == fired_spans
    assert [(e.start_s, e.detected_s) for e in live.events] == [(s.event.start_s, s.event.detected_s) for s in fired]
    assert [e.verify_score for e in live.events] == pytest.approx([s.event.verify_score for s in fired], abs=1e-6)
    assert live.vetoed and live.events  # the stand-in vetoes the quiet ones and keeps the loud ones
    # Each first verdict is the stand-in's formula on the audio from the raising window's start.
    at = round(starts[0].event.start_s * RATE)
    assert verdicts[0][0] >= stand_in_screaming(audio[at : at + 15600]) - 1e-5
    # Live, a candidate is judged until a verdict passes; offline every verdict is asked.
    assert live_verifier.stats.checked == sum(e.verdicts for e in candidates)
    assert offline_verifier.stats.checked == sum(len(a) for a in asked) >= live_verifier.stats.checked
    assert all(1 <= len(a) <= attempts for a in asked)
    later = [e for e in live.events if e.verdicts > 1]
    if attempts == 1:
        assert not later and live_verifier.stats.checked == len(starts)
    else:  # the quiet scream running into the loud one: vetoed at first, confirmed by a later verdict
        assert later and all(e.detected_s > e.start_s + side.window_s for e in later)
        assert any(e.start_s > 28.0 for e in later)


def test_judged_keeps_candidates_at_or_above_the_threshold() -> None:
    from edge.detector import Event

    starts = [EventStarted(Event(i + 1, float(i), float(i) + 1, 0.9)) for i in range(3)]
    verdicts = [np.array([0.2, 0.4]), np.array([0.5]), np.array([0.1, 0.7, 0.9])]
    moments = [[1.0, 1.5], [2.0], [3.0, 3.5, 4.0]]
    judged = Judged(starts, [(0.0, 1.0), (1.0, 2.0)], verdicts, moments, [], 10.0)
    kept, spans = judged.kept(0.5)
    assert [s.event.number for s in kept] == [2, 3] and spans == [(1.0, 2.0)]  # the open third has no span
    # Each fires at its first passing verdict, with that verdict's score.
    assert [(s.event.detected_s, s.event.verify_score) for s in kept] == [(2.0, 0.5), (3.5, 0.7)]
    assert [s.event.number for s in judged.kept(0.0)[0]] == [1, 2, 3]
    assert [s.event.detected_s for s in judged.kept(0.0)[0]] == [1.0, 2.0, 3.0]  # without a verifier
    assert judged.kept(0.95) == ([], [])


def test_verification_report_chooses_on_validation_and_replays_on_test(
    tiny_training: Any,
    synthetic_dataset: Path,
    stand_in_verifier: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from train.evaluate import evaluate

    trained = tiny_training.model_path
    splits = trained.parent / f"{trained.stem}-run" / "splits.tsv"
    model = tmp_path / "model" / trained.name  # a copy: --record writes to its sidecar
    model.parent.mkdir()
    shutil.copy(trained, model)
    shutil.copy(trained.with_suffix(".json"), model.with_suffix(".json"))
    cache = str(tmp_path / "waves")
    out = tmp_path / "verification"
    argv = ["verification", "--model", str(model), "--data", str(synthetic_dataset), "--splits", str(splits)]
    argv += ["--verifier", str(stand_in_verifier), "--out", str(out), "--cache", cache, "--scenes", "2"]
    assert main([*argv, "--budget", "40", "--record", "--attempts", "2"]) == 0
    printed = capsys.readouterr().out
    assert "chosen on validation at <= 40 false alarms/h" in printed
    report = json.loads((out / "report.json").read_text())
    points = report["points"]
    # --record kept the chosen pair in the model's sidecar, and a site whose [verifier] leaves the
    # threshold at 0 runs exactly that pair behind this model.
    (pair,) = Classifier(model).sidecar.verification
    assert pair == chosen_pair(report, f"{out}/report.md") and f"recorded in {model.with_suffix('.json')}" in printed
    assert (pair.on_threshold, pair.threshold, pair.attempts) == (
        points["verified"]["on"],
        points["verified"]["verifier_threshold"],
        2,
    )
    assert pair.verifier_sha256 == sha256_file(stand_in_verifier) and pair.classes == ("Screaming",)
    site = parse_config({"verifier": {"model": str(stand_in_verifier)}})
    pipeline = DetectionPipeline.for_model(Classifier(model), site, source_rate_hz=16000)
    assert pipeline.detector.params.on_threshold == pair.on_threshold
    assert (pipeline.detector.verify_threshold, pipeline.detector.verify_attempts) == (pair.threshold, 2)
    # Recording again for the same verdict replaces the pair; the rest of the sidecar is untouched.
    before = json.loads(model.with_suffix(".json").read_text())
    record_pair(model, replace(pair, threshold=0.5), report["model_sha256"])
    after = json.loads(model.with_suffix(".json").read_text())
    assert [p["threshold"] for p in after.pop("verification")] == [0.5]
    assert after == {k: v for k, v in before.items() if k != "verification"}
    # The model's own point without a verifier is what `scream evaluate` measures on the same split.
    evaluated = evaluate(
        model,
        synthetic_dataset,
        out_dir=tmp_path / "evaluate",
        splits_file=splits,
        cache_dir=cache,
        scenes=2,
        make_plots=False,
    )
    own = points["model"]["test"]
    assert own["stream_false_alarms"] == evaluated["stream"]["false_alarms"]
    assert (own["scene_detected"], own["scene_false_alarms"]) == (
        evaluated["scene"]["detected"],
        evaluated["scene"]["false_alarms"],
    )
    assert points["model"]["verifier_threshold"] == 0 and points["model"]["on"] == pytest.approx(
        Classifier(model).sidecar.operating_point.on_threshold
    )
    # Each choice keeps within the budget on validation (the scenes' false alarms per hour).
    for name in ("student", "verified"):
        validation = points[name]["validation"]
        assert validation["scene_false_alarms_per_hour"] <= 40 + 1e-9
    assert 0 < points["verified"]["verifier_threshold"] < 1
    assert report["test_recall_difference"]["difference"] == pytest.approx(
        points["verified"]["test"]["scene_event_recall"] - points["student"]["test"]["scene_event_recall"], abs=1e-3
    )
    markdown = (out / "report.md").read_text()
    assert f"threshold = {points['verified']['verifier_threshold']:g}" in markdown
    assert f"on_threshold = {points['verified']['on']:g}" in markdown
    assert report["candidates_judged"] > 0 and report["verifier_windows"] >= report["candidates_judged"]


def test_a_pair_is_recorded_only_for_the_model_measured_and_only_with_a_threshold(
    tiny_model: Path, tmp_path: Path
) -> None:
    model = tmp_path / "m.tflite"
    shutil.copy(tiny_model, model)
    shutil.copy(tiny_model.with_suffix(".json"), model.with_suffix(".json"))
    report: dict[str, Any] = {
        "points": {"verified": {"on": 0.8, "verifier_threshold": 0.0}},
        "verifier": {"sha256": "a" * 64, "classes": ["Screaming"], "head_sha256": "", "attempts": 1},
        "budget_false_alarms_per_hour": 5.0,
        "scenes_per_split": 4,
        "seed": 0,
    }
    with pytest.raises(ScreamError, match="chose no verifier threshold"):
        chosen_pair(report)
    report["points"]["verified"]["verifier_threshold"] = 0.25
    pair = chosen_pair(report)
    assert (pair.on_threshold, pair.threshold, pair.classes, pair.patience) == (0.8, 0.25, ("Screaming",), None)
    sidecar = model.with_suffix(".json").read_bytes()
    with pytest.raises(ScreamError, match="is not the sidecar of the model measured"):
        record_pair(model, pair, "b" * 64)
    assert model.with_suffix(".json").read_bytes() == sidecar
    record_pair(model, pair, sha256_file(model))
    assert Classifier(model).sidecar.verification == (pair,)
    assert not list(tmp_path.glob("*.tmp"))
