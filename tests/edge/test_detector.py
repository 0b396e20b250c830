from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from edge.config import ScheduleConfig
from edge.detector import DecisionParams, Detector, EventStarted, Transition
from edge.errors import ConfigError

HOP = 0.25
WIN = 1.0
LOUD = -20.0  # dBFS: well above the default loudness gate


def step(detector: Detector, score: float, start_s: float, end_s: float, level_dbfs: float = LOUD) -> list[Transition]:
    return list(detector.update(score, start_s, end_s, level_dbfs=level_dbfs).transitions)


def run(scores: list[float], params: DecisionParams) -> list[tuple[str, float, float | None]]:
    """Feed scores one hop apart; returns ('start', detected_s, None) / ('end', start_s, end_s)."""
    detector = Detector(params)
    out: list[Transition] = []
    for i, score in enumerate(scores):
        out += step(detector, score, i * HOP, i * HOP + WIN)
    out += detector.finish(len(scores) * HOP + WIN)
    return [
        ("start", t.event.detected_s, None) if isinstance(t, EventStarted) else ("end", t.event.start_s, t.event.end_s)
        for t in out
    ]


def test_hysteresis_holds_between_off_and_on() -> None:
    params = DecisionParams(on_threshold=0.8, off_threshold=0.4, min_event_s=0.0, cooldown_s=0.0)
    events = run([0.1, 0.9, 0.6, 0.5, 0.45, 0.3, 0.1], params)
    assert events == [("start", 1.25, None), ("end", 0.25, 2.0)]


def test_patience_needs_k_of_n() -> None:
    params = DecisionParams(on_threshold=0.8, off_threshold=0.5, patience_windows=2, patience_of=3, min_event_s=0.0)
    assert run([0.9, 0.1, 0.1, 0.9, 0.1, 0.1], params) == []
    events = run([0.1, 0.9, 0.2, 0.9, 0.1], params)
    assert events[0] == ("start", 0.75 + WIN, None)
    assert events[1][1] == 0.25  # onset is the first window over `on`


def test_smoothing_ignores_a_lone_spike_and_keeps_a_sustained_scream() -> None:
    spike_then_scream = [0.1, 0.95, 0.1, 0.1, 0.95, 0.9, 0.1, 0.1, 0.1]
    raw = DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=0.0, cooldown_s=0.0)
    assert [e[1] for e in run(spike_then_scream, raw) if e[0] == "start"] == [0.25 + WIN, 1.0 + WIN]
    smoothed = replace(raw, smoothing_windows=2)  # means: 0.1 0.525 0.525 0.1 0.525 0.925 0.5 0.1
    events = run(spike_then_scream, smoothed)
    assert events == [("start", 1.25 + WIN, None), ("end", 1.25, 1.5 + WIN)]  # off holds while the mean is 0.5
    detector = Detector(smoothed)
    for i, score in enumerate(spike_then_scream[:6]):
        started = step(detector, score, i * HOP, i * HOP + WIN)
    assert started and started[0].event.peak_score == 0.95  # the peak is a real window score, not a mean


def test_smoothing_averages_what_there_is_at_the_start_and_across_retunes() -> None:
    detector = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.5, smoothing_windows=3))
    assert step(detector, 0.85, 0.0, 1.0)  # the mean of one window is that window
    detector = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.5))
    step(detector, 0.7, 0.0, 1.0)
    detector.retune(DecisionParams(on_threshold=0.8, off_threshold=0.5, smoothing_windows=2))
    assert step(detector, 0.85, 0.25, 1.25) == []  # (0.7 + 0.85) / 2: the earlier score still counts
    assert step(detector, 0.9, 0.5, 1.5)


def test_minimum_event_length() -> None:
    params = DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=2.0, cooldown_s=0.0)
    events = run([0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], params)
    assert events == [("start", 1.0, None), ("end", 0.0, 2.0)]


def test_event_end_always_comes_even_if_score_stays_high() -> None:
    params = DecisionParams(on_threshold=0.8, off_threshold=0.5, max_event_s=3.0, cooldown_s=10.0, min_event_s=0.0)
    events = run([0.95] * 80, params)
    ends = [e for e in events if e[0] == "end"]
    assert ends[0] == ("end", 0.0, 3.0)
    # A new event may start only after the cooldown: 3 s + 10 s.
    starts = [e for e in events if e[0] == "start"]
    assert len(starts) == len(ends) and starts[1][1] >= 13.0


def test_cooldown_suppresses_retrigger() -> None:
    params = DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=0.0, cooldown_s=2.0)
    scores = [0.9, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.1]
    starts = [e for e in run(scores, params) if e[0] == "start"]
    assert [s[1] for s in starts] == [1.0, 3.75]


def test_open_event_closed_at_end_of_stream() -> None:
    params = DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=0.0)
    assert run([0.1, 0.9, 0.9], params)[-1] == ("end", 0.25, 1.5)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"on_threshold": 1.5}, "on_threshold"),
        ({"off_threshold": 0.9}, "off_threshold"),
        ({"patience_windows": 3, "patience_of": 2}, "patience_windows"),
        ({"cooldown_s": -1.0}, "cooldown_s"),
        ({"smoothing_windows": 0}, "smoothing_windows"),
    ],
)
def test_bad_parameters_name_the_field(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        DecisionParams(**kwargs)  # type: ignore[arg-type]


def test_threshold_override_keeps_hysteresis_ratio() -> None:
    params = DecisionParams(on_threshold=0.8, off_threshold=0.4).with_threshold(0.6)
    assert params.on_threshold == 0.6 and params.off_threshold == pytest.approx(0.3)


def test_retune_to_a_longer_patience_keeps_counting() -> None:
    detector = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=0.0))
    step(detector, 0.1, 0.0, 1.0)
    detector.retune(DecisionParams(on_threshold=0.8, off_threshold=0.5, patience_windows=3, patience_of=3))
    assert step(detector, 0.9, 0.25, 1.25) == [] and step(detector, 0.9, 0.5, 1.5) == []
    started = step(detector, 0.9, 0.75, 1.75)
    assert len(started) == 1 and started[0].event.start_s == 0.25


def test_the_loudness_gate_holds_quiet_windows_back_but_not_an_open_event() -> None:
    params = DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=0.0, cooldown_s=0.0)
    assert params.loudness_gate_dbfs == -70.0  # the default every command runs with
    detector = Detector(params)
    decision = detector.update(0.95, 0.0, 1.0, level_dbfs=-75.0)
    assert decision.gated and decision.decision_score == 0.0 and decision.transitions == ()
    assert step(detector, 0.95, 0.25, 1.25, level_dbfs=-70.0)  # at the gate counts as loud enough
    # Once an event is open, a quiet window keeps its score: the scream fading does not cut it short.
    held = detector.update(0.9, 0.5, 1.5, level_dbfs=-90.0)
    assert held.gated and held.decision_score == 0.9 and held.transitions == ()
    assert step(detector, 0.1, 0.75, 1.75)  # ends on the score
    off = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.5, loudness_gate_dbfs=-120.0))
    assert step(off, 0.95, 0.0, 1.0, level_dbfs=-100.0)  # -120 disables it


def test_the_noise_floor_raises_the_gate_to_floor_plus_margin() -> None:
    params = DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=0.0, noise_floor_margin_db=10.0)
    detector = Detector(params)
    for i in range(20):  # a steady background at -40 dBFS: the floor
        step(detector, 0.1, i * HOP, i * HOP + WIN, level_dbfs=-40.0)
    assert detector.noise_floor_dbfs == -40.0
    start = 20 * HOP
    assert detector.update(0.95, start, start + WIN, level_dbfs=-35.0).gated  # 5 dB over the floor: held back
    assert step(detector, 0.95, start + HOP, start + HOP + WIN, level_dbfs=-29.0)  # 11 dB over: fires


def test_schedules_set_the_threshold_and_outputs_by_the_moment() -> None:
    night = ScheduleConfig(name="night", start="22:00", end="07:00", on_threshold=0.95, outputs=["led", "event_log"])
    detector = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.4, min_event_s=0.0), [night])
    late = dt.datetime(2026, 12, 1, 23, 30)
    at_night = detector.update(0.9, 0.0, 1.0, level_dbfs=LOUD, moment=late)
    assert at_night.schedule == "night" and at_night.on_threshold == 0.95 and at_night.off_threshold == 0.475
    assert at_night.outputs == frozenset({"led", "event_log"}) and at_night.transitions == ()
    day = detector.update(0.9, 0.25, 1.25, level_dbfs=LOUD, moment=late.replace(hour=12))
    assert day.schedule == "" and day.on_threshold == 0.8 and day.transitions
    assert "buzzer" in day.outputs
    assert detector.update(0.9, 0.5, 1.5, level_dbfs=LOUD).schedule == ""  # no moment: no schedule


def test_patience_and_smoothing_keep_their_time_span_at_another_hop() -> None:
    params = DecisionParams(patience_windows=2, patience_of=3, smoothing_windows=3)
    faster = params.at_hop(25, 10)  # 250 ms windows to 100 ms: hits 250 ms apart become 5 x 100 ms
    assert (faster.patience_windows, faster.patience_of, faster.smoothing_windows) == (4, 6, 6)
    assert params.at_hop(25, 25) is params
    longest = DecisionParams(patience_windows=60, patience_of=60).at_hop(25, 10)
    assert (longest.patience_windows, longest.patience_of) == (100, 100)  # 149 would be over the limit
    assert DecisionParams.from_sidecar(params.to_sidecar()) == params


def test_a_new_event_may_start_exactly_when_the_cooldown_ends() -> None:
    detector = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=0.0, cooldown_s=1.0))
    assert step(detector, 0.9, 0.0, 1.0)  # starts
    ended = step(detector, 0.1, 0.25, 1.25)
    assert ended and ended[0].event.end_s == 1.0  # cooldown until 2.0
    assert step(detector, 0.9, 0.5, 1.5) == [] and step(detector, 0.9, 0.75, 1.75) == []
    again = step(detector, 0.9, 1.0, 2.0)  # the window that ends as the cooldown does may start one
    assert again and isinstance(again[0], EventStarted) and again[0].event.detected_s == 2.0


def test_the_end_of_the_stream_keeps_the_minimum_event_length() -> None:
    detector = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=3.0))
    assert step(detector, 0.9, 0.0, 1.0)
    (closed,) = detector.finish(5.0)
    assert closed.event.end_s == 3.0 and closed.event.ended_by == "end_of_stream"  # start + min_event_s
    short = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=3.0))
    step(short, 0.9, 0.0, 1.0)
    assert short.finish(2.0)[0].event.end_s == 2.0  # ... but never past the stream's end


def test_a_sidecar_block_without_patience_or_smoothing_means_one() -> None:
    params = DecisionParams.from_sidecar({"on": 0.7, "off": 0.4})
    assert (params.on_threshold, params.off_threshold) == (0.7, 0.4)
    assert (params.patience_windows, params.patience_of, params.smoothing_windows) == (1, 1, 1)


def test_the_noise_floor_is_estimated_only_with_a_margin_and_from_eight_windows() -> None:
    plain = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.5))
    for i in range(20):
        step(plain, 0.1, i * HOP, i * HOP + WIN, level_dbfs=-40.0)
    assert plain.noise_floor_dbfs is None  # no margin: no floor
    half = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=0.0, noise_floor_margin_db=0.5))
    for i in range(7):
        step(half, 0.1, i * HOP, i * HOP + WIN, level_dbfs=-40.26)
    assert half.noise_floor_dbfs is None  # seven windows: too few
    assert half.update(0.95, 7 * HOP, 7 * HOP + WIN, level_dbfs=-39.9).gated  # the 8th: floor -40.3, +0.5
    assert half.noise_floor_dbfs == -40.3  # to a tenth of a dB


def test_retuning_to_less_smoothing_forgets_the_older_scores() -> None:
    detector = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.5, smoothing_windows=3))
    for i, score in enumerate([0.1, 0.1, 0.1]):
        step(detector, score, i * HOP, i * HOP + WIN)
    detector.retune(DecisionParams(on_threshold=0.8, off_threshold=0.5, smoothing_windows=1))
    assert detector.update(0.85, 0.75, 1.75, level_dbfs=LOUD).decision_score == 0.85  # not (0.1+0.1+0.85)/3
    detector.retune(DecisionParams(on_threshold=0.8, off_threshold=0.5, patience_windows=1, patience_of=1))
    patient = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.5, patience_windows=2, patience_of=3))
    step(patient, 0.9, 0.0, 1.0)
    patient.retune(DecisionParams(on_threshold=0.8, off_threshold=0.5, patience_windows=1, patience_of=1))
    step(patient, 0.1, 0.25, 1.25)  # the 0.9 leaves the 1-window memory
    assert step(patient, 0.1, 0.5, 1.5) == []


def test_the_noise_floor_follows_the_last_minute_only() -> None:
    detector = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.5, noise_floor_margin_db=6.0))
    for i in range(480):  # a quiet minute, then a loud one: the floor is the loud minute's
        step(detector, 0.1, i * HOP, i * HOP + WIN, level_dbfs=-60.0 if i < 240 else -20.0)
    assert detector.noise_floor_dbfs == -20.0


def test_a_retune_keeps_the_schedule_in_force() -> None:
    night = ScheduleConfig(name="night", start="22:00", end="07:00", on_threshold=0.95)
    detector = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.4), [night])
    late = dt.datetime(2026, 12, 1, 23, 0)
    detector.update(0.1, 0.0, 1.0, level_dbfs=LOUD, moment=late)
    detector.retune(DecisionParams(on_threshold=0.7, off_threshold=0.35))  # a reloaded model, still at night
    assert detector.params.on_threshold == 0.95 and detector.base_params.on_threshold == 0.7


def test_bad_parameters_are_said_with_what_they_must_be() -> None:
    with pytest.raises(ConfigError, match=r"^decision parameters: on_threshold must be in \(0, 1\), got 1.5$"):
        DecisionParams(on_threshold=1.5)
    with pytest.raises(ConfigError) as caught:  # every bad parameter at once, in field order
        DecisionParams(on_threshold=1.5, cooldown_s=-1)
    assert str(caught.value) == (
        "decision parameters: on_threshold must be in (0, 1), got 1.5; cooldown_s must be in 0-3600 s, got -1"
    )


def _transitions(params: DecisionParams, scores: list[float]) -> list[Transition]:
    detector = Detector(params)
    out: list[Transition] = []
    for i, score in enumerate(scores):
        out += step(detector, score, i * HOP, i * HOP + WIN)
    return out


def test_an_events_peak_follows_it_and_events_are_numbered_in_turn() -> None:
    params = DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=0.0, cooldown_s=0.0)
    out = _transitions(params, [0.9, 0.95, 0.99, 0.7, 0.1, 0.1, 0.85, 0.1])
    started = [t.event for t in out if isinstance(t, EventStarted)]
    ended = [t.event for t in out if not isinstance(t, EventStarted)]
    assert [e.number for e in started] == [1, 2]
    assert [(e.peak_score, e.ended_by) for e in ended] == [(0.99, "score"), (0.85, "score")]


def test_a_long_event_is_cut_at_max_event_s_from_its_onset() -> None:
    """Onset at 0.25 s and a 2 s cap: the window ending at 2.25 s closes it, at 2.25 s, not later."""
    params = DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=0.0, max_event_s=2.0, cooldown_s=0.0)
    out = _transitions(params, [0.1] + [0.9] * 5)
    assert [type(t).__name__ for t in out] == ["EventStarted", "EventEnded"]
    event = out[1].event
    assert (event.start_s, event.end_s, event.ended_by) == (0.25, 2.25, "max_event_s")
    assert [type(t).__name__ for t in _transitions(params, [0.1] + [0.9] * 4)] == ["EventStarted"]


def test_thresholds_are_inclusive_on_and_exclusive_off() -> None:
    """A score equal to `on` starts an event; one equal to `off` keeps it open."""
    params = DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=0.0, cooldown_s=0.0)
    assert run([0.8, 0.5, 0.5, 0.1], params) == [("start", WIN, None), ("end", 0.0, 0.5 + WIN)]


def test_an_event_ends_as_soon_as_min_event_s_is_reached() -> None:
    """The window ending exactly at onset + min_event_s announces the end, not the one after it."""
    params = DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=1.25, cooldown_s=0.0)
    detector = Detector(params)
    per_window = [step(detector, score, i * HOP, i * HOP + WIN) for i, score in enumerate([0.9, 0.1, 0.1])]
    assert [[type(t).__name__ for t in ts] for ts in per_window] == [["EventStarted"], ["EventEnded"], []]
    ended = per_window[1][0].event
    assert (ended.end_s, ended.ended_by) == (1.25, "score")


def test_a_decision_reports_its_window() -> None:
    detector = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.5))
    decision = detector.update(0.3, 1.5, 2.5, level_dbfs=-17.5)
    assert (decision.start_s, decision.end_s, decision.score, decision.level_dbfs) == (1.5, 2.5, 0.3, -17.5)
    assert (decision.on_threshold, decision.off_threshold, decision.gated) == (0.8, 0.5, False)


def test_a_retune_to_longer_patience_keeps_the_windows_already_heard() -> None:
    detector = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.4, patience_windows=2, patience_of=3))
    assert step(detector, 0.9, 0.0, WIN) == []  # one hit of two
    detector.retune(DecisionParams(on_threshold=0.8, off_threshold=0.4, patience_windows=2, patience_of=4))
    started = step(detector, 0.9, HOP, HOP + WIN)  # the second hit, counted with the first
    assert [type(t).__name__ for t in started] == ["EventStarted"] and started[0].event.start_s == 0.0


def test_a_retune_to_more_smoothing_averages_only_the_new_number_of_windows() -> None:
    detector = Detector(DecisionParams(on_threshold=0.8, off_threshold=0.4, smoothing_windows=2))
    for i in range(3):
        detector.update(0.0, i * HOP, i * HOP + WIN, level_dbfs=LOUD)
    detector.retune(DecisionParams(on_threshold=0.8, off_threshold=0.4, smoothing_windows=3))
    means = [detector.update(0.9, i * HOP, i * HOP + WIN, level_dbfs=LOUD).decision_score for i in range(3, 7)]
    assert means == pytest.approx([0.3, 0.6, 0.9, 0.9])  # the two zeros kept, then three windows at most
