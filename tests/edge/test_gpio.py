"""GPIO pin by pin: every state each pin takes, with its time, through gpiozero's mock pins (the
`pins` fixture in tests/edge/conftest.py), for steady and blinking LEDs, the buzzer pattern and its
limit, and active-low wiring."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from edge.config import GpioConfig
from edge.sinks import AlarmMessage, GpioAlarm
from tests.edge.conftest import pin_timeline

ALL = frozenset({"led", "buzzer"})


def run_event(
    pins: Any, config: GpioConfig, seconds: float, outputs: frozenset[str] = ALL
) -> tuple[float, float, float]:
    """Create the alarm, start an event, end it `seconds` later; returns (created, started, ended)."""
    created = time.monotonic()
    alarm = GpioAlarm(config, pin_factory=pins)
    started = time.monotonic()
    alarm.handle(AlarmMessage("start", {}, outputs))
    time.sleep(seconds)
    ended = time.monotonic()
    alarm.handle(AlarmMessage("end", {}, outputs))
    time.sleep(0.05)
    alarm.close()
    return created, started, ended


def states(timeline: list[tuple[float, bool]]) -> list[bool]:
    """The timeline's states with repeats merged (gpiozero records a state again when it is re-set)."""
    out: list[bool] = []
    for _, state in timeline:
        if not out or out[-1] != state:
            out.append(state)
    return out


def test_steady_led_and_a_buzzer_pattern_that_stops_by_itself(pins: Any) -> None:
    config = GpioConfig(led_pin=17, buzzer_pin=27, buzzer_on_s=0.1, buzzer_off_s=0.1, buzzer_max_s=0.6)
    created, started, ended = run_event(pins, config, 1.0)
    led = pin_timeline(pins, 17, created)
    assert states(led) == [False, True, False]
    on = next(t for t, s in led if s)
    off = next(t for t, s in led if not s and t > on)
    assert abs(on - started) < 0.05 and abs(off - ended) < 0.05  # on at the start, off at the end
    buzzer = pin_timeline(pins, 27, created)
    assert states(buzzer) == [False, True, False, True, False, True, False]  # 3 beeps of 0.6 s / 0.2 s
    rises = [t for (t, s), (_, before) in zip(buzzer[1:], buzzer, strict=False) if s and not before]
    assert [round(b - a, 1) for a, b in itertools.pairwise(rises)] == [0.2, 0.2]
    last_off = buzzer[-1][0]
    # The third beep ends 0.5 s after the first began: within buzzer_max_s, and quiet before the end.
    assert last_off - rises[0] == pytest.approx(0.5, abs=0.06) and last_off < ended


def test_blinking_led(pins: Any) -> None:
    config = GpioConfig(led_blink=True, buzzer_max_s=0.0)
    created, started, ended = run_event(pins, config, 1.4)
    led = pin_timeline(pins, 17, created)
    # 0.25 s on, 0.25 s off for 1.4 s: on at 0, 0.5 and 1.0 s, then off at the end.
    assert states(led) == [False, True, False, True, False, True, False]
    rises = [t for (t, s), (_, before) in zip(led[1:], led, strict=False) if s and not before]
    assert [round(t - started, 1) for t in rises] == [0.0, 0.5, 1.0]
    assert states(pin_timeline(pins, 27, created)) == [False]  # buzzer_max_s = 0: never sounds
    assert led[-1][0] - ended < 0.05


def test_active_low_inverts_every_pin_state(pins: Any) -> None:
    config = GpioConfig(led_pin=5, buzzer_pin=6, active_high=False, buzzer_on_s=0.2, buzzer_off_s=0.0, buzzer_max_s=0.3)
    created, _, _ = run_event(pins, config, 0.5)
    # After the mock pin's own first (low) state, before gpiozero drives it: off is high, on is low.
    assert states(pin_timeline(pins, 5, created)[1:]) == [True, False, True]
    assert states(pin_timeline(pins, 6, created)[1:]) == [True, False, True]  # one 0.3 s tone, driven low


def test_a_schedule_that_drops_the_buzzer_leaves_its_pin_alone(pins: Any) -> None:
    created, _, _ = run_event(pins, GpioConfig(), 0.3, outputs=frozenset({"led"}))
    assert states(pin_timeline(pins, 17, created)) == [False, True, False]
    assert states(pin_timeline(pins, 27, created)) == [False]


def test_a_vetoed_candidates_message_leaves_every_pin_as_it_is(pins: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """A vetoed candidate ending (kind "vetoed", even one whose outputs were to name the pins) is
    not an event's end: a lit LED stays lit and the console prints nothing for it."""
    from edge.sinks import ConsoleLog

    config = GpioConfig(led_pin=17, buzzer_pin=27, buzzer_max_s=0.0)
    created = time.monotonic()
    alarm = GpioAlarm(config, pin_factory=pins)
    alarm.handle(AlarmMessage("vetoed", {}, ALL))
    alarm.handle(AlarmMessage("start", {}, ALL))
    alarm.handle(AlarmMessage("vetoed", {}, ALL))
    time.sleep(0.05)
    assert states(pin_timeline(pins, 17, created)) == [False, True]  # still on
    alarm.handle(AlarmMessage("end", {}, ALL))
    assert states(pin_timeline(pins, 17, created)) == [False, True, False]
    alarm.close()
    ConsoleLog().handle(AlarmMessage("vetoed", {"id": "x", "start_stream_s": 1.0}, ALL))
    assert capsys.readouterr().out == ""
