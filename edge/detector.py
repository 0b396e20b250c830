"""The decisions: everything between a window score and a scream event, in one object.

`DecisionParams` is the one description of the alarm rule (and its one validator); `Detector`
applies it: the loudness gate and adaptive noise floor, optional smoothing (the mean of the last m
window scores meets the thresholds), k-of-n patience to start, hysteresis (`on` to start, `off` to
end), a minimum and a maximum event length, a cooldown between events, and the `[[schedule]]`
window active at each moment (its threshold and outputs). Every command that turns scores into
events (`listen`, `detect`, `demo`, `explain`, `evaluate`, `crossval`, the operating-point search,
`bench`) goes through `Detector`.

Pure and clock-free: times come in with the scores (and the wall-clock moment, for schedules), so
replay and live decide identically. An optional second stage (`verify`, edge.verifier through
edge.pipeline) scores each candidate event when it would start: below `verify_threshold` the
candidate is vetoed. It still runs its course here (hysteresis, cooldown) but is announced only as
`EventVetoed` and, when its span closes, `VetoedEnded`, so alarm outputs never see it (the service
may keep its clip for review). With `verify_attempts` n > 1, a vetoed candidate is judged again each
time the student's patience is met anew within it (on the windows that met it), up to n verdicts in
all: a scream that starts inside a candidate raised by something else (a ringtone, a door, speech
just before it) is not lost to that candidate's veto. The first verdict that passes lifts the veto
(`VetoLifted`, an `EventStarted` at that moment: the alarm fires then). Verdicts never change a
candidate's span, so the events that fire are the candidates as without a second stage, each from
its first passing verdict.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.errors import ConfigError

if TYPE_CHECKING:
    from edge.config import ScheduleConfig

OUTPUTS = ("led", "buzzer", "event_log", "clips", "mqtt", "webhook")  # what a schedule may switch
NOISE_FLOOR_PERCENTILE = 10
NOISE_FLOOR_WINDOWS = 240  # one minute of 250 ms hops
NOISE_FLOOR_MIN_WINDOWS = 8  # the floor is not estimated from fewer windows than this

# The one range of each decision parameter, and how it is said. `[detector]` overrides, the
# sidecar's operating point and the parameters themselves are all checked against these.
LIMITS: dict[str, tuple[Callable[[float], bool], str]] = {
    "on_threshold": (lambda v: 0.0 < v < 1.0, "in (0, 1)"),
    "off_threshold": (lambda v: 0.0 < v < 1.0, "in (0, 1)"),
    "patience_windows": (lambda v: 1 <= v <= 100, "a whole number in 1-100"),
    "patience_of": (lambda v: 1 <= v <= 100, "a whole number in 1-100"),
    "smoothing_windows": (lambda v: 1 <= v <= 100, "a whole number in 1-100"),
    "min_event_s": (lambda v: 0.0 <= v <= 3600.0, "in 0-3600 s"),
    "max_event_s": (lambda v: 0.0 < v <= 3600.0, "in (0, 3600] s"),
    "cooldown_s": (lambda v: 0.0 <= v <= 3600.0, "in 0-3600 s"),
    "loudness_gate_dbfs": (lambda v: -120.0 <= v <= 0.0, "in -120-0 dBFS"),
    "noise_floor_margin_db": (lambda v: 0.0 <= v <= 60.0, "in 0-60 dB"),
}
# Pairs that must keep their order: the first never above the second.
ORDERED = (("off_threshold", "on_threshold"), ("patience_windows", "patience_of"), ("min_event_s", "max_event_s"))


def out_of_range(values: Mapping[str, Any]) -> dict[str, str]:
    """What each of `values` that breaks LIMITS or ORDERED (pairs only when both are given) must be."""
    bad = {name: LIMITS[name][1] for name, value in values.items() if name in LIMITS and not LIMITS[name][0](value)}
    for low, high in ORDERED:
        if low in values and high in values and low not in bad and values[low] > values[high]:
            bad[low] = f"at most {high} ({values[high]:g})"
    return bad


@dataclass(frozen=True, kw_only=True)
class DecisionParams:
    """The alarm rule. The model's sidecar gives the operating point (thresholds, patience,
    smoothing); a site's `[detector]` section may override any of it and sets the rest."""

    on_threshold: float = 0.8
    off_threshold: float = 0.5
    patience_windows: int = 1  # k: windows at or above `on` among the last n to start an event
    patience_of: int = 1  # n
    smoothing_windows: int = 1  # m: thresholds apply to the mean score of the last m windows (1: none)
    min_event_s: float = 1.0
    max_event_s: float = 30.0
    cooldown_s: float = 2.0
    loudness_gate_dbfs: float = -70.0  # windows quieter than this start no event; -120: only digital silence
    noise_floor_margin_db: float = 0.0  # > 0: also gate at the adaptive noise floor plus this margin

    def __post_init__(self) -> None:
        bad = out_of_range(asdict(self))
        if bad:
            raise ConfigError(
                "decision parameters: "
                + "; ".join(f"{name} must be {rule}, got {getattr(self, name):g}" for name, rule in bad.items())
            )

    # -- the sidecar's `thresholds` block ------------------------------------------------------
    @classmethod
    def from_sidecar(cls, block: Mapping[str, Any]) -> DecisionParams:
        """A sidecar's `thresholds` block ({on, off, patience_windows, patience_of, smoothing_windows})."""
        return cls(
            on_threshold=float(block["on"]),
            off_threshold=float(block["off"]),
            patience_windows=int(block.get("patience_windows", 1)),
            patience_of=int(block.get("patience_of", 1)),
            smoothing_windows=int(block.get("smoothing_windows", 1)),
        )

    def to_sidecar(self) -> dict[str, Any]:
        """The sidecar's `thresholds` keys for these parameters (the inverse of from_sidecar)."""
        return {
            "on": self.on_threshold,
            "off": self.off_threshold,
            "patience_windows": self.patience_windows,
            "patience_of": self.patience_of,
            "smoothing_windows": self.smoothing_windows,
        }

    # -- derived rules ---------------------------------------------------------------------
    def describe(self) -> str:
        """How an event starts, in words: '1 of 1 window', '2 of 3 windows', 'mean of 3 windows', or
        'mean of 3 windows, 2 of 3 windows'. Shared by bench, the demo and evaluate's report."""
        text = f"{self.patience_windows} of {self.patience_of} window{'s' if self.patience_of > 1 else ''}"
        if self.smoothing_windows > 1:
            text = f"mean of {self.smoothing_windows} windows" + (f", {text}" if self.patience_of > 1 else "")
        return text

    def with_threshold(self, on_threshold: float) -> DecisionParams:
        """Move `on` and keep the off/on ratio, so hysteresis survives a threshold override."""
        ratio = self.off_threshold / self.on_threshold
        return replace(self, on_threshold=on_threshold, off_threshold=on_threshold * ratio)

    def at_hop(self, from_hop_frames: int, to_hop_frames: int) -> DecisionParams:
        """The same patience and smoothing for windows `to_hop_frames` apart instead of
        `from_hop_frames`, spanning the same time from first to last window: 2 of 2 at a 250 ms hop
        (hits 250 ms apart) becomes 4 of 4 at 100 ms (hits 300 ms apart); at most 100 windows."""
        if from_hop_frames == to_hop_frames:
            return self

        def count(windows: int) -> int:
            return min(100, 1 + int((windows - 1) * (from_hop_frames / to_hop_frames) + 0.5))

        n = count(self.patience_of)
        return replace(
            self,
            patience_windows=min(n, count(self.patience_windows)),
            patience_of=n,
            smoothing_windows=count(self.smoothing_windows),
        )


@dataclass
class Event:
    """One detected scream. `end_s` is None while it lasts. With a second stage, `verify_score` is
    its verdict; a vetoed candidate has number 0 (fired events are numbered 1, 2, ... in turn)."""

    number: int
    start_s: float
    detected_s: float
    peak_score: float
    end_s: float | None = None
    ended_by: str = ""
    verify_score: float | None = None  # the passing verdict, or the best of a vetoed candidate's
    is_vetoed: bool = False
    verdicts: int = 0  # how many times the second stage judged it


@dataclass(frozen=True)
class EventStarted:
    event: Event


@dataclass(frozen=True)
class VetoLifted(EventStarted):
    """A vetoed candidate that a later verdict passed: it fires from this window on (`detected_s`
    is now), and ends as any event does. Its earlier `EventVetoed` is void."""


@dataclass(frozen=True)
class EventEnded:
    event: Event


@dataclass(frozen=True)
class EventVetoed:
    """A candidate the second stage turned down: no output fires for it."""

    event: Event


@dataclass(frozen=True)
class VetoedEnded:
    """A vetoed candidate's span closing (its end and peak known now): no alarm output fires for it
    either; the service keeps its clip for review with `[clips] keep_vetoed`."""

    event: Event


Transition = EventStarted | EventEnded | EventVetoed | VetoedEnded
Verify = Callable[[float, float], float]  # (first hit start, detection time) in stream s -> score
MAX_VERIFY_ATTEMPTS = 16


@dataclass(frozen=True)
class Decision:
    """What the decisions made of one window: the score the thresholds met (smoothed, or 0 when the
    gate held it back), the thresholds and schedule in force, and the events it started or ended."""

    start_s: float
    end_s: float
    score: float
    decision_score: float
    level_dbfs: float
    gated: bool  # too quiet to start an event (the gate, or the noise floor plus its margin)
    on_threshold: float
    off_threshold: float
    schedule: str
    outputs: frozenset[str]
    transitions: tuple[Transition, ...]


def _check_verify_attempts(attempts: int) -> None:
    if not 1 <= attempts <= MAX_VERIFY_ATTEMPTS:
        raise ConfigError(f"verify_attempts must be in 1-{MAX_VERIFY_ATTEMPTS}, got {attempts}")


@dataclass
class Detector:
    """The one decision object: feed window scores in stream order with `update`, end with `finish`."""

    params: DecisionParams
    schedules: Sequence[ScheduleConfig] = ()
    verify: Verify | None = None  # the second stage, asked when a candidate event would start
    verify_threshold: float = 0.0
    verify_attempts: int = 1  # verdicts per candidate at most: a vetoed one is judged again at fresh hits
    _base: DecisionParams = field(init=False)
    _recent: collections.deque[tuple[float, bool]] = field(init=False)
    _scores: collections.deque[float] = field(init=False)
    _levels: collections.deque[float] = field(init=False)
    _active: Event | None = field(default=None, init=False)
    _last_above_off_s: float = field(default=0.0, init=False)
    _cooldown_until_s: float = field(default=float("-inf"), init=False)
    _count: int = field(default=0, init=False)
    _schedule: ScheduleConfig | None = field(default=None, init=False)
    _outputs: frozenset[str] = field(default=frozenset(OUTPUTS), init=False)
    noise_floor_dbfs: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        _check_verify_attempts(self.verify_attempts)
        self._base = self.params
        self._recent = collections.deque(maxlen=self.params.patience_of)
        self._scores = collections.deque(maxlen=self.params.smoothing_windows)
        self._levels = collections.deque(maxlen=NOISE_FLOOR_WINDOWS)

    @property
    def base_params(self) -> DecisionParams:
        """The rule outside any schedule (`params` is the one in force)."""
        return self._base

    def retune(
        self, params: DecisionParams, *, verify_threshold: float | None = None, verify_attempts: int | None = None
    ) -> None:
        """New base parameters mid-stream (a reloaded model, and its verifier settings when given);
        an open event carries on."""
        if verify_attempts is not None:
            _check_verify_attempts(verify_attempts)
        self._base = params
        self.verify_threshold = self.verify_threshold if verify_threshold is None else verify_threshold
        self.verify_attempts = verify_attempts or self.verify_attempts
        self._use(self._scheduled(self._schedule))

    def _scheduled(self, schedule: ScheduleConfig | None) -> DecisionParams:
        base = self._base
        return base.with_threshold(schedule.on_threshold) if schedule and schedule.on_threshold else base

    def _use(self, params: DecisionParams) -> None:
        self.params = params
        if self._recent.maxlen != params.patience_of:
            self._recent = collections.deque(self._recent, maxlen=params.patience_of)
        if self._scores.maxlen != params.smoothing_windows:
            self._scores = collections.deque(self._scores, maxlen=params.smoothing_windows)

    def schedule_at(self, moment: dt.datetime | None) -> ScheduleConfig | None:
        """The first `[[schedule]]` window active at `moment` (none without a moment)."""
        if moment is None:
            return None
        return next((s for s in self.schedules if s.is_active(moment)), None)

    def _loud_enough(self, level_dbfs: float) -> bool:
        p = self.params
        self._levels.append(level_dbfs)
        gate = p.loudness_gate_dbfs
        if p.noise_floor_margin_db > 0 and len(self._levels) >= NOISE_FLOOR_MIN_WINDOWS:
            self.noise_floor_dbfs = round(float(np.percentile(self._levels, NOISE_FLOOR_PERCENTILE)), 1)
            gate = max(gate, self.noise_floor_dbfs + p.noise_floor_margin_db)
        return level_dbfs >= gate

    def update(
        self, score: float, start_s: float, end_s: float, *, level_dbfs: float, moment: dt.datetime | None = None
    ) -> Decision:
        """Decide one window (`level_dbfs` is its loudness, `moment` its wall-clock time for
        schedules). A window the gate holds back counts as score 0 unless an event is open; with
        smoothing the thresholds meet the mean of the last m scores (fewer at the start of a
        stream); an event's peak stays the highest single-window score."""
        schedule = self.schedule_at(moment)
        if schedule is not self._schedule:
            self._schedule = schedule
            self._outputs = frozenset(schedule.outputs if schedule else OUTPUTS)
            self._use(self._scheduled(schedule))
        p = self.params
        gated = not self._loud_enough(level_dbfs)
        raw = 0.0 if gated and self._active is None else score
        out: list[Transition] = []
        self._scores.append(raw)
        decision_score = sum(self._scores) / len(self._scores) if p.smoothing_windows > 1 else raw
        if self._active is not None:
            event = self._active
            event.peak_score = max(event.peak_score, raw)
            if decision_score >= p.off_threshold:
                self._last_above_off_s = end_s
            min_end = event.start_s + p.min_event_s
            ended = None
            if end_s - event.start_s >= p.max_event_s:
                ended = self._end(event.start_s + p.max_event_s, "max_event_s")
            elif decision_score < p.off_threshold and end_s >= min_end:
                ended = self._end(max(self._last_above_off_s, min_end), "score")
            if ended is not None:
                out.append(VetoedEnded(event) if event.is_vetoed else ended)
            elif event.is_vetoed and event.verdicts < self.verify_attempts:
                lifted = self._judge_again(event, start_s, end_s, decision_score >= p.on_threshold)
                if lifted is not None:
                    out.append(lifted)
        else:
            first = self._patience_met(start_s, decision_score >= p.on_threshold)
            if first is not None and end_s >= self._cooldown_until_s:
                event = Event(0, first, end_s, max(self._scores))
                if self.verify is not None:
                    event.verify_score = self.verify(first, end_s)
                    event.verdicts = 1
                    event.is_vetoed = event.verify_score < self.verify_threshold
                if not event.is_vetoed:
                    self._number(event)
                self._active = event
                self._last_above_off_s = end_s
                self._recent.clear()
                out.append(EventVetoed(event) if event.is_vetoed else EventStarted(event))
        return Decision(
            start_s,
            end_s,
            score,
            decision_score,
            level_dbfs,
            gated,
            p.on_threshold,
            p.off_threshold,
            schedule.name if schedule else "",
            self._outputs,
            tuple(out),
        )

    def _judge_again(self, event: Event, start_s: float, end_s: float, hit: bool) -> VetoLifted | None:
        """A vetoed candidate's next verdict, once the patience rule is met again within it (on the
        windows that met it); the veto lifted if it passes."""
        assert self.verify is not None
        first = self._patience_met(start_s, hit)
        if first is None:
            return None
        self._recent.clear()
        score = self.verify(first, end_s)
        event.verdicts += 1
        if score < self.verify_threshold:
            event.verify_score = max(event.verify_score or 0.0, score)
            return None
        event.verify_score = score
        event.is_vetoed = False
        event.detected_s = end_s
        self._number(event)
        return VetoLifted(event)

    def _patience_met(self, start_s: float, hit: bool) -> float | None:
        """Count one window toward k-of-n patience: the first hit's start once k of the last n
        windows hit, else None."""
        self._recent.append((start_s, hit))
        hits = [start for start, is_hit in self._recent if is_hit]
        return hits[0] if len(hits) >= self.params.patience_windows else None

    def _number(self, event: Event) -> None:
        """A firing event's number: 1, 2, ... in turn."""
        self._count += 1
        event.number = self._count

    def finish(self, end_s: float) -> list[Transition]:
        """Close an open event at the end of the stream."""
        if self._active is None:
            return []
        p = self.params
        end = min(max(self._last_above_off_s, self._active.start_s + p.min_event_s), end_s)
        ended = self._end(max(end, self._active.start_s), "end_of_stream")
        return [VetoedEnded(ended.event) if ended.event.is_vetoed else ended]

    def _end(self, end_s: float, reason: str) -> EventEnded:
        assert self._active is not None
        event = self._active
        event.end_s = end_s
        event.ended_by = reason
        self._active = None
        self._cooldown_until_s = end_s + self.params.cooldown_s
        self._recent.clear()
        return EventEnded(event)
