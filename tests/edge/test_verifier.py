"""The optional second stage: the verifier model, its place in the one decision object, the audio
the pipeline hands it, and its configuration and failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edge import synth
from edge.config import Config, VerifierConfig, parse_config
from edge.detector import DecisionParams, Detector, EventEnded, EventStarted, EventVetoed, VetoedEnded, VetoLifted
from edge.errors import ConfigError, ModelError
from edge.features import FeatureParams
from edge.pipeline import MAX_VERIFY_WINDOWS, DetectionPipeline, chunked, raising_windows
from edge.verifier import EmbeddingHead, EventVerifier
from tests.helpers import STAND_IN_CLASSES, stand_in_embedding, stand_in_screaming, write_stand_in_head

RATE = 16000
FloatArray = npt.NDArray[np.float32]


# -- the verifier model ---------------------------------------------------------------------------
def test_stand_in_verifier_scores_windows_as_its_formula(stand_in_verifier: Path) -> None:
    verifier = EventVerifier(stand_in_verifier, classes=["Screaming"], threshold=0.5)
    assert verifier.window_samples == 15600 and verifier.classes == ["Screaming"]
    rng = np.random.default_rng(0)
    windows = [(rng.standard_normal(15600) * a).astype(np.float32) for a in (0.01, 0.05, 0.2)]
    scores = [verifier.score(w) for w in windows]
    assert scores == pytest.approx([stand_in_screaming(w) for w in windows], abs=1e-5)
    assert scores[0] < 0.01 < 0.99 < scores[2]
    # The verdict on a candidate is the best of its windows; a veto is counted.
    assert verifier.judge(windows[:2]) == pytest.approx(scores[1], abs=1e-6)
    assert verifier.judge(windows) == pytest.approx(scores[2], abs=1e-6)
    stats = verifier.stats
    assert (stats.checked, stats.vetoed, stats.windows) == (2, 1, 8)
    assert stats.last_score == pytest.approx(scores[2], abs=1e-6) and stats.invoke_ms_total > 0
    status = verifier.status()
    assert status["checked"] == 2 and status["vetoed"] == 1 and status["sha256"] == verifier.sha256


def test_several_classes_score_their_best(stand_in_verifier: Path) -> None:
    """ "Speech" is 1 - "Screaming" in the stand-in: with both, the score is never below 0.5."""
    verifier = EventVerifier(stand_in_verifier, classes=["Screaming", "Speech"], threshold=0.5)
    quiet = np.full(15600, 0.001, dtype=np.float32)
    assert verifier.score(quiet) == pytest.approx(1 - stand_in_screaming(quiet), abs=1e-5)
    with pytest.raises(ValueError, match=r"shape \(100,\), the model takes \(15600,\)"):
        verifier.score(quiet[:100])


def test_verifier_problems_are_named(stand_in_verifier: Path, tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"verifier model .*nothing\.tflite does not exist"):
        EventVerifier(tmp_path / "nothing.tflite", classes=["Screaming"], threshold=0.5)
    lonely = tmp_path / "lonely.tflite"
    lonely.write_bytes(stand_in_verifier.read_bytes())
    with pytest.raises(ModelError, match=r"class map .*lonely_class_map\.csv does not exist"):
        EventVerifier(lonely, classes=["Screaming"], threshold=0.5)
    with pytest.raises(ConfigError, match="'Scream' is not one of its 3 classes"):
        EventVerifier(stand_in_verifier, classes=["Scream"], threshold=0.5)
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer" * 100)
    (tmp_path / "garbage_class_map.csv").write_text((stand_in_verifier.parent / "standin_class_map.csv").read_text())
    with pytest.raises(ModelError, match=r"garbage\.tflite cannot be loaded"):
        EventVerifier(garbage, classes=["Screaming"], threshold=0.5)
    # The int8 scream model is no waveform classifier.
    student = tmp_path / "student.tflite"
    student.write_bytes(tiny_model.read_bytes())
    (tmp_path / "student_class_map.csv").write_text("index,mid,display_name\n0,/m/0,Screaming\n")
    with pytest.raises(ModelError, match="must take one float32 waveform input"):
        EventVerifier(student, classes=["Screaming"], threshold=0.5)
    # A class map of another model: its class count matches no output.
    five = tmp_path / "five.csv"
    five.write_text("index,mid,display_name\n" + "".join(f"{i},/m/{i},Screaming{i or ''}\n" for i in range(5)))
    with pytest.raises(ModelError, match=r"no \[1, 5\] class-score output"):
        EventVerifier(stand_in_verifier, classes=["Screaming"], threshold=0.5, class_map=five)
    headless = tmp_path / "headless.csv"
    headless.write_text("0,/m/0,Screaming\n")
    with pytest.raises(ModelError, match="needs the header index,mid,display_name"):
        EventVerifier(stand_in_verifier, classes=["Screaming"], threshold=0.5, class_map=headless)


def test_verifier_config_is_checked_and_off_by_default(stand_in_verifier: Path) -> None:
    assert Config().verifier.model == "" and EventVerifier.from_config(Config().verifier) is None
    with pytest.raises(ConfigError, match=r"unknown key verifier\.thresold"):
        parse_config({"verifier": {"thresold": 0.2}})
    with pytest.raises(
        ConfigError, match=r"verifier\.threshold must be 0 \(the model's pair\) or in \(0, 1\), got 1\.0"
    ):
        parse_config({"verifier": {"threshold": 1.0}})
    with pytest.raises(ConfigError, match=r"verifier\.classes must be a non-empty list of class names"):
        parse_config({"verifier": {"classes": []}})
    with pytest.raises(ConfigError, match=r"verifier\.threads must be in 1-8"):
        parse_config({"verifier": {"threads": 0}})
    config = parse_config({"verifier": {"model": str(stand_in_verifier), "classes": ["Yell"], "threshold": 0.3}})
    verifier = EventVerifier.from_config(config.verifier)
    assert verifier is not None and verifier.classes == ["Yell"] and verifier.threshold == 0.3
    assert verifier.class_indices == [STAND_IN_CLASSES.index("Yell")]
    assert VerifierConfig().classes == ["Screaming"]


def test_a_head_scores_the_models_embedding(stand_in_verifier: Path, tmp_path: Path) -> None:
    """With a head the verdict is sigmoid(w . e / |e| + b) of the model's intermediate embedding
    tensor (read with every tensor kept), not a class score."""
    coef = [6.0, 0.5, -1.0, 10.0]
    head = write_stand_in_head(tmp_path / "head.json", stand_in_verifier, coef, intercept=3.0)
    verifier = EventVerifier(stand_in_verifier, classes=["Screaming"], threshold=0.4, head=head)
    assert verifier.head is not None and verifier.classes == [] and verifier.verdict == "head head.json"
    rng = np.random.default_rng(3)
    windows = [(rng.standard_normal(15600) * a).astype(np.float32) for a in (0.002, 0.05, 0.3)]
    windows.append(synth.scream_like(0.975, RATE, rng, level=0.3)[:15600].astype(np.float32))
    expected = []
    for w in windows:
        e = stand_in_embedding(w)
        expected.append(1 / (1 + np.exp(-(e / np.linalg.norm(e) @ np.array(coef) + 3.0))))
    scores = [verifier.score(w) for w in windows]
    assert scores == pytest.approx(expected, abs=2e-4)
    assert max(scores) - min(scores) > 0.5  # the embedding moves with the audio, so does the verdict
    assert scores != pytest.approx([stand_in_screaming(w) for w in windows], abs=0.05)
    assert verifier.judge(windows) == pytest.approx(max(scores), abs=1e-9)
    status = verifier.status()
    assert status["head"] == str(head) and status["classes"] == [] and status["windows"] == 8
    # The head's own arithmetic: unit length first (a scaled embedding scores the same), zero stays zero.
    loaded = EmbeddingHead.load(head)
    e = stand_in_embedding(windows[1])
    assert loaded.score(e.astype(np.float32)) == pytest.approx(loaded.score((7 * e).astype(np.float32)), abs=1e-6)
    assert loaded.score(np.zeros(4, dtype=np.float32)) == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert loaded.score(np.array([1e3, 0, 0, 0], dtype=np.float32)) == pytest.approx(1 / (1 + np.exp(-9.0)))


def test_head_problems_are_named(stand_in_verifier: Path, tmp_path: Path) -> None:
    def refused(match: str, head: Path) -> None:
        with pytest.raises(ModelError, match=match):
            EventVerifier(stand_in_verifier, classes=["Screaming"], threshold=0.5, head=head)

    def head(name: str, coef: list[Any], **changes: Any) -> Path:
        return write_stand_in_head(tmp_path / name, stand_in_verifier, coef, **changes)

    refused(r"verifier head .*absent\.json does not exist", tmp_path / "absent.json")
    (tmp_path / "torn.json").write_text('{"format": "scream-verifier-head/1", "coef": [1,')
    refused(r"verifier head .*torn\.json cannot be read", tmp_path / "torn.json")
    (tmp_path / "other.json").write_text('{"format": "something-else"}')
    refused(r"other\.json is not a scream-verifier-head/1 file", tmp_path / "other.json")
    good = [0.1, 0.2, 0.3, 0.4]
    refused(
        r"'intercept' is not a number \(None\)",
        head("a.json", good, intercept=None),
    )
    refused("'coef' is not a list of numbers", head("b.json", ["x"]))
    no_sha = json.loads(head("b2.json", good).read_text())
    del no_sha["model_sha256"]
    (tmp_path / "b2.json").write_text(json.dumps(no_sha))
    refused("has no field 'model_sha256'", tmp_path / "b2.json")
    refused("must be strings", head("b3.json", good, tensor=5))
    refused("finite weights", head("c.json", [0.1, float("nan"), 0.3, 0.4]))
    refused("finite weights", head("d.json", []))
    refused("must name its tensor", head("e.json", good, tensor=""))
    # Fitted on another model: refused, naming both hashes' starts.
    other = head("f.json", good, model_sha256="ab" * 32)
    refused(r"was fitted on a model with sha256 abababababab…", other)
    refused(
        r"has no tensor 'embedding/Nowhere'",
        head("g.json", good, tensor="embedding/Nowhere"),
    )
    refused(r"has 3 weights, tensor .* holds 4 float32 values", head("h.json", good[:3]))
    # A head on a file that is no model at all: the model's own error comes first.
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer" * 100)
    with pytest.raises(ModelError, match=r"garbage\.tflite cannot be loaded"):
        EventVerifier(
            garbage, classes=["Screaming"], threshold=0.5, head=write_stand_in_head(tmp_path / "i.json", garbage, good)
        )


def test_the_head_comes_from_the_config(stand_in_verifier: Path, tmp_path: Path) -> None:
    head = write_stand_in_head(tmp_path / "head.json", stand_in_verifier, [0.0, 1.0, 0.0, 0.0])
    config = parse_config({"verifier": {"model": str(stand_in_verifier), "head": str(head), "threshold": 0.6}})
    assert config.verifier.head == str(head) and VerifierConfig().head == ""
    verifier = EventVerifier.from_config(config.verifier)
    assert verifier is not None and verifier.head is not None and verifier.threshold == 0.6
    assert verifier.head.coef.tolist() == [0.0, 1.0, 0.0, 0.0]
    with pytest.raises(ConfigError, match=r"verifier\.head must be"):
        parse_config({"verifier": {"head": 3}})


# -- the decision object ---------------------------------------------------------------------------
def run_detector(
    scores: list[float], verdicts: list[float], threshold: float = 0.5, attempts: int = 1
) -> tuple[Any, list[Any]]:
    asked: list[tuple[float, float]] = []

    def verify(start_s: float, detected_s: float) -> float:
        asked.append((start_s, detected_s))
        return verdicts[len(asked) - 1]

    params = DecisionParams(
        on_threshold=0.8, off_threshold=0.5, patience_windows=2, patience_of=3, min_event_s=0.5, cooldown_s=1.0
    )
    detector = Detector(params, verify=verify, verify_threshold=threshold, verify_attempts=attempts)
    out = []
    for i, score in enumerate(scores):
        out += detector.update(score, i * 0.25, i * 0.25 + 1.0, level_dbfs=-20.0).transitions
    out += detector.finish(len(scores) * 0.25 + 1.0)
    return asked, out


def test_a_vetoed_candidate_fires_nothing_but_runs_its_course() -> None:
    # Candidate 1 (hits in windows 1 and 3) is vetoed; its span ends at window 5's end (2.25 s) and its
    # 1 s cooldown holds windows 7 and 8 back; candidate 2 (hits from window 7, detected by window 9,
    # which ends as the cooldown does) is confirmed and fires as event number 1.
    scores = [0.1, 0.9, 0.2, 0.9, 0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1]
    asked, transitions = run_detector(scores, [0.2, 0.7])
    assert asked == [(0.25, 1.75), (1.75, 3.25)]  # (first hit's start, the detecting window's end)
    kinds = [type(t) for t in transitions]
    assert kinds == [EventVetoed, VetoedEnded, EventStarted, EventEnded]
    vetoed, started = transitions[0].event, transitions[2].event
    assert vetoed.is_vetoed and vetoed.number == 0 and vetoed.verify_score == 0.2
    assert started.number == 1 and started.verify_score == 0.7 and not started.is_vetoed
    assert transitions[1].event is vetoed and vetoed.end_s == 2.25 and vetoed.peak_score == 0.9
    assert started.start_s == 1.75 and transitions[3].event is started


def test_without_a_verifier_the_same_scores_give_the_same_spans() -> None:
    """The veto changes only what is announced: the confirmed event's span is the one the same
    scores give with no second stage at all."""
    scores = [0.1, 0.9, 0.2, 0.9, 0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1]
    _, verified = run_detector(scores, [0.2, 0.7])
    _, accepted = run_detector(scores, [0.9, 0.9])
    ends = [t.event for t in accepted if isinstance(t, EventEnded)]
    assert [(e.start_s, e.end_s) for e in ends][1:] == [
        (t.event.start_s, t.event.end_s) for t in verified if isinstance(t, EventEnded)
    ]


def test_an_open_vetoed_candidate_ends_as_vetoed_at_the_end_of_the_stream() -> None:
    asked, transitions = run_detector([0.9, 0.9, 0.9], [0.1])
    assert len(asked) == 1 and [type(t) for t in transitions] == [EventVetoed, VetoedEnded]
    assert transitions[1].event.ended_by == "end_of_stream" and transitions[1].event.end_s == 1.5


RUN = [0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1]  # one candidate, hits in windows 1-6


def test_a_vetoed_candidate_is_judged_again_at_fresh_hits_and_fires_at_the_first_that_passes() -> None:
    # Detected by windows 1-2 (verdict 1 on 0.25-1.5 s: vetoed); the patience rule is met anew by
    # windows 3-4 (verdict 2 on 0.75-2.0 s: passes), so the candidate fires at 2.0 s as event 1.
    asked, transitions = run_detector(RUN, [0.2, 0.7], attempts=3)
    assert asked == [(0.25, 1.5), (0.75, 2.0)]  # no third verdict once one passed
    assert [type(t) for t in transitions] == [EventVetoed, VetoLifted, EventEnded]
    event = transitions[0].event
    assert all(t.event is event for t in transitions) and isinstance(transitions[1], EventStarted)
    assert not event.is_vetoed and event.number == 1 and event.verdicts == 2 and event.verify_score == 0.7
    assert event.detected_s == 2.0
    # Its span is the candidate's, as with no second stage at all.
    _, plain = run_detector(RUN, [0.9])
    assert (event.start_s, event.end_s) == (plain[1].event.start_s, plain[1].event.end_s) == (0.25, 2.5)


def test_verdicts_stop_at_the_attempts_and_the_best_failed_verdict_is_kept() -> None:
    asked, transitions = run_detector(RUN, [0.2, 0.3, 0.9], attempts=2)
    assert asked == [(0.25, 1.5), (0.75, 2.0)]
    assert [type(t) for t in transitions] == [EventVetoed, VetoedEnded]
    assert transitions[0].event.verify_score == 0.3 and transitions[0].event.verdicts == 2
    asked, transitions = run_detector(RUN, [0.2, 0.3, 0.9], attempts=3)
    assert asked == [(0.25, 1.5), (0.75, 2.0), (1.25, 2.5)]  # windows 5-6 meet the rule a third time
    assert [type(t) for t in transitions] == [EventVetoed, VetoLifted, EventEnded]
    assert transitions[1].event.detected_s == 2.5
    asked, transitions = run_detector(RUN, [0.2, 0.7])  # one verdict: the veto stands
    assert asked == [(0.25, 1.5)] and [type(t) for t in transitions] == [EventVetoed, VetoedEnded]
    with pytest.raises(ConfigError, match="verify_attempts must be in 1-16"):
        Detector(DecisionParams(), verify_attempts=0)


def test_the_threshold_itself_confirms() -> None:
    _, transitions = run_detector([0.9, 0.9, 0.1, 0.1, 0.1, 0.1], [0.5])
    assert [type(t) for t in transitions] == [EventStarted, EventEnded]


# -- the windows a candidate is verified on --------------------------------------------------------
def test_raising_windows_span_first_hit_to_detection() -> None:
    hop, window = 0.25, 0.975
    assert raising_windows(2.0, 2.975, hop_s=hop, window_s=window) == [2.0]  # 1 of 1
    assert raising_windows(2.0, 3.475, hop_s=hop, window_s=window) == [2.0, 2.25, 2.5]  # 2 of 3, a miss between
    many = raising_windows(0.0, 20 * hop + window, hop_s=hop, window_s=window)
    assert len(many) == MAX_VERIFY_WINDOWS and many[-1] == 20 * hop and many[0] == (20 - MAX_VERIFY_WINDOWS + 1) * hop
    assert raising_windows(2.0, 2.5, hop_s=hop, window_s=window) == [2.0]  # never none


class LoudnessScorer:
    """A stand-in student: the window's mean log-mel, squashed (loud windows score high)."""

    input_shape = (96, 40)

    def score(self, window: FloatArray) -> float:
        return float(1 / (1 + np.exp(-(float(np.mean(window)) + 6.0))))


class RecordingVerifier:
    """A second stage that keeps what it was handed and confirms only candidates after `after_s`."""

    threshold = 0.5
    window_samples = 15600

    def __init__(self, attempts: int = 1) -> None:
        self.attempts = attempts
        self.requested = (self.threshold, attempts)
        self.heard: list[list[FloatArray]] = []

    def pair_in(self, side: Any) -> None:
        return None

    def judge(self, windows: list[FloatArray]) -> float:
        self.heard.append([w.copy() for w in windows])
        return 0.9 if len(self.heard) % 2 == 0 else 0.1


def bursts() -> FloatArray:
    rng = np.random.default_rng(5)
    audio = synth.room_tone(24.0, RATE, rng, level=0.0005)
    for at in (3.0, 9.0, 15.0, 21.0):
        noise = rng.standard_normal(int(1.2 * RATE)).astype(np.float32) * 0.3
        audio[int(at * RATE) : int(at * RATE) + noise.size] += noise
    return audio


def pipeline_with(verifier: Any, source_rate_hz: int = RATE) -> DetectionPipeline:
    decisions = DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=0.5, cooldown_s=0.5)
    return DetectionPipeline(
        LoudnessScorer(), FeatureParams(), decisions, hop_frames=25, source_rate_hz=source_rate_hz, verifier=verifier
    )


@pytest.mark.parametrize("chunk_ms", [30, 100, 2500, 24000])
def test_the_verifier_hears_the_raising_windows_audio_in_any_chunking(chunk_ms: int) -> None:
    audio = bursts()
    verifier = RecordingVerifier()
    result = pipeline_with(verifier).run(chunked(audio, RATE * chunk_ms // 1000))
    assert len(verifier.heard) == 4  # one verdict per candidate, never per window
    assert [e.number for e in result.events] == [1, 2] and len(result.vetoed) == 2
    assert [round(e.start_s) for e in result.vetoed] == [2, 14] and [round(e.start_s) for e in result.events] == [8, 20]
    for event, heard in zip(
        sorted(result.vetoed + result.events, key=lambda e: e.start_s), verifier.heard, strict=True
    ):
        starts = raising_windows(event.start_s, event.detected_s, hop_s=0.25, window_s=0.975)
        assert len(heard) == len(starts)
        for start_s, window in zip(starts, heard, strict=True):
            at = round(start_s * RATE)
            np.testing.assert_array_equal(window, audio[at : at + 15600])


def test_the_verifier_hears_resampled_audio_and_across_a_restart() -> None:
    """48 kHz in: the verifier gets the model-rate audio the student scored; after a restart (a
    reopened device) stream time runs on and the windows are cut from the new session's audio."""
    audio = bursts()
    resampled = np.repeat(audio, 3)  # 48 kHz, as a microphone might give it
    verifier = RecordingVerifier()
    pipeline = pipeline_with(verifier, source_rate_hz=48000)
    first = pipeline.run(chunked(resampled[: 12 * 48000], 4800))
    pipeline.restart(RATE)
    second = pipeline.run(chunked(audio[12 * RATE :], 1600))
    assert len(first.vetoed) == 1 and len(first.events) == 1 and len(verifier.heard) == 4
    assert [round(e.start_s) for e in second.vetoed + second.events] == [14, 20]
    at = round((second.vetoed[0].start_s - 12.0) * RATE)
    np.testing.assert_array_equal(verifier.heard[2][0], audio[12 * RATE + at : 12 * RATE + at + 15600])
    # Resampling 3x repeated samples is not the identity, but the verifier heard what the student did.
    assert float(np.max(np.abs(verifier.heard[0][0]))) > 0.2


def test_a_verifier_needs_the_model_rate_it_hears() -> None:
    with pytest.raises(ModelError, match="the verifier hears 16000 Hz audio, the model 8000 Hz"):
        DetectionPipeline(
            LoudnessScorer(),
            FeatureParams(sample_rate_hz=8000, fmax_hz=3800.0),
            DecisionParams(),
            hop_frames=25,
            source_rate_hz=8000,
            verifier=RecordingVerifier(),
        )


def test_a_failing_verifier_lets_every_candidate_fire_and_says_so(
    stand_in_verifier: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verifier fault (the runtime failing an invoke) never silences an alarm: the candidate fires
    unverified, and the failure is counted and named in the status problems."""
    import time

    from edge.health import problems_in

    verifier = EventVerifier(stand_in_verifier, classes=["Screaming"], threshold=0.5)

    def broken() -> None:
        raise RuntimeError("invoke failed: delegate error")

    monkeypatch.setattr(verifier._interpreter, "invoke", broken)
    result = pipeline_with(verifier).run(chunked(bursts(), 1600))
    assert len(result.events) == 4 and not result.vetoed  # every burst fires, none is turned down
    assert all(e.verify_score == 1.0 for e in result.events)
    stats = verifier.stats
    assert (stats.checked, stats.vetoed, stats.errors) == (4, 0, 4) and "delegate error" in stats.last_error
    now = time.time()
    status = {"updated_at": now, "device_state": "ok", "last_audio_at": now, "verifier": verifier.status()}
    assert problems_in(status, now) == [
        "verifier failed 4 time(s), those candidates fired unverified: invoke failed: delegate error"
    ]
    assert problems_in({**status, "verifier": {}}, now) == []
