from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge import synth
from edge.classifier import Classifier
from edge.pipeline import DetectionPipeline, chunked, detection_settings
from train.operating_point import Candidate, OperatingPointRule, candidate_thresholds, choose
from train.scenes import decide, score_stream


def cand(
    recall: float, fa_h: float, latency: float | None = 0.6, k: int = 1, n: int = 1, fpr: float = 0.01
) -> Candidate:
    return Candidate(fpr, 0.9, 0.8, k, n, recall, fa_h, latency)


def test_most_recall_within_the_false_alarm_budget() -> None:
    rule = OperatingPointRule(max_false_alarms_per_hour=0.5, min_event_recall=0.6)
    candidates = [cand(0.9, 8.0), cand(0.7, 0.0, k=2, n=2), cand(0.65, 0.4, k=3, n=3), cand(0.8, 0.0, latency=1.5)]
    best, clause = choose(candidates, rule)
    assert (best.event_recall, best.patience_windows) == (0.7, 2)
    assert "at or under 0.5 false alarms per hour" in clause


def test_fewest_false_alarms_above_the_recall_and_latency_floors() -> None:
    rule = OperatingPointRule(max_false_alarms_per_hour=0.5, min_event_recall=0.54, max_latency_s=1.0)
    candidates = [
        cand(0.6, 60.0),
        cand(0.55, 20.0, k=2, n=2, fpr=0.005),
        cand(0.5, 4.0, k=3, n=3),  # too little recall
        cand(0.6, 10.0, latency=1.4, k=3, n=3),  # too late
        cand(0.58, 20.0, latency=0.5, k=2, n=3),  # as few false alarms as the second, more recall
    ]
    best, clause = choose(candidates, rule)
    assert (best.event_recall, best.patience_of) == (0.58, 3)
    assert "no candidate reached" in clause and "recall at least 0.54" in clause


def test_falls_back_to_the_plain_threshold() -> None:
    rule = OperatingPointRule(max_latency_s=0.5)
    candidates = [cand(0.6, 9.0, k=2, n=2), cand(0.7, 30.0, latency=0.8), cand(0.75, 50.0, fpr=0.02)]
    best, clause = choose(candidates, rule)
    assert (best.window_fpr, best.patience_of, best.event_recall) == (0.01, 1, 0.7)
    assert "plain window threshold" in clause


def test_candidate_thresholds_are_ordered_and_distinct() -> None:
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(200, bool), np.zeros(2000, bool)]
    scores = np.r_[rng.uniform(0.5, 1, 200), rng.uniform(0, 0.9, 2000)]
    rows = candidate_thresholds(labels, scores, OperatingPointRule())
    ons = [on for _, on, _ in rows]
    assert ons == sorted(ons, reverse=True) and len(set(ons)) == len(ons) == 4
    assert [fpr for fpr, _, _ in rows] == [0.0025, 0.005, 0.01, 0.02]
    assert all(0 < off <= on for _, on, off in rows)
    # Every window scored the same: one candidate, not four copies of it, named for the default FPR.
    assert [fpr for fpr, _, _ in candidate_thresholds(labels, np.full(2200, 0.3), OperatingPointRule())] == [0.01]


def test_scoring_once_and_deciding_later_matches_the_live_pipeline(tiny_model: Path) -> None:
    """The sweep decides over stored scores; it must see exactly what the live pipeline sees."""
    classifier = Classifier(tiny_model)
    side = classifier.sidecar
    rng = np.random.default_rng(5)
    audio = synth.room_tone(20.0, 16000, rng)
    for at in (2.0, 9.0, 15.0):
        scream = synth.scream_like(1.2, 16000, rng)
        audio[int(at * 16000) : int(at * 16000) + scream.size] += scream
    decisions, _ = detection_settings(side)
    stored = decide(score_stream(classifier, audio), decisions)
    pipeline = DetectionPipeline.for_model(classifier, source_rate_hz=16000)
    assert pipeline.detector.params == decisions  # the gate too
    live = pipeline.run(chunked(audio, 1600)).transitions
    live_starts = [(t.event.start_s, t.event.detected_s) for t in live if type(t).__name__ == "EventStarted"]
    assert [(s.event.start_s, s.event.detected_s) for s in stored[0]] == live_starts
    assert len(stored[1]) == len(live_starts) >= 1


def test_training_records_the_operating_point_it_chose(tiny_training) -> None:  # type: ignore[no-untyped-def]
    t = json.loads(tiny_training.model_path.with_suffix(".json").read_text())["thresholds"]
    assert 1 <= t["patience_windows"] <= t["patience_of"]
    assert t["chosen_by"].startswith("4 validation scenes")
    chosen = t["validation"]
    assert chosen in t["candidates"]
    assert (chosen["on"], chosen["off"], chosen["patience"]) == (
        t["on"],
        t["off"],
        f"{t['patience_windows']} of {t['patience_of']}",
    )
    assert len(t["candidates"]) % len(OperatingPointRule().patience) == 0
    # What the edge will run is what was chosen.
    params, _ = detection_settings(Classifier(tiny_training.model_path).sidecar)
    assert (params.on_threshold, params.patience_windows, params.patience_of) == (
        t["on"],
        t["patience_windows"],
        t["patience_of"],
    )


def test_a_candidate_that_detects_nothing_is_never_chosen_for_being_quiet() -> None:
    rule = OperatingPointRule(max_false_alarms_per_hour=0.5, min_event_recall=0.0)
    best, clause = choose([cand(0.0, 0.0, fpr=0.005), cand(0.9, 3.0)], rule)
    assert best.event_recall == 0.9 and "fewest false alarms" in clause
