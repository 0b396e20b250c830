"""Decision logic: from a score per window to scream events with a start and an end.

Optional smoothing (the mean of the last m window scores is what meets the thresholds), k-of-n
patience to start, hysteresis (`on` to start, `off` to end), a minimum event length, a maximum
event length so an alarm can never stay on, and a cooldown between events.
Pure and clock-free: times come in with the scores, so replay and live decide identically.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field, replace

from edge.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class DecisionParams:
    on_threshold: float = 0.8
    off_threshold: float = 0.5
    patience_windows: int = 1  # k: windows at or above `on` among the last n to start an event
    patience_of: int = 1  # n
    smoothing_windows: int = 1  # m: thresholds apply to the mean score of the last m windows (1: none)
    min_event_s: float = 1.0
    max_event_s: float = 30.0
    cooldown_s: float = 2.0

    def __post_init__(self) -> None:
        checks = {
            "on_threshold": 0.0 < self.on_threshold < 1.0,
            "off_threshold": 0.0 < self.off_threshold <= self.on_threshold,
            "patience_windows": 1 <= self.patience_windows <= self.patience_of,
            "patience_of": 1 <= self.patience_of <= 100,
            "smoothing_windows": 1 <= self.smoothing_windows <= 100,
            "min_event_s": 0.0 <= self.min_event_s <= self.max_event_s,
            "max_event_s": 0.0 < self.max_event_s <= 3600.0,
            "cooldown_s": 0.0 <= self.cooldown_s <= 3600.0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                "decision parameters out of range: " + ", ".join(f"{name}={getattr(self, name)}" for name in bad)
            )

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


@dataclass
class Event:
    """One detected scream. `end_s` is None while it lasts."""

    number: int
    start_s: float
    detected_s: float
    peak_score: float
    end_s: float | None = None
    ended_by: str = ""


@dataclass(frozen=True)
class EventStarted:
    event: Event


@dataclass(frozen=True)
class EventEnded:
    event: Event


Transition = EventStarted | EventEnded


@dataclass
class EventDetector:
    params: DecisionParams
    _recent: collections.deque[tuple[float, bool]] = field(init=False)
    _scores: collections.deque[float] = field(init=False)
    _active: Event | None = field(default=None, init=False)
    _last_above_off_s: float = field(default=0.0, init=False)
    _cooldown_until_s: float = field(default=float("-inf"), init=False)
    _count: int = field(default=0, init=False)
    decision_score: float = field(default=0.0, init=False)  # what the thresholds met at the last update

    def __post_init__(self) -> None:
        self._recent = collections.deque(maxlen=self.params.patience_of)
        self._scores = collections.deque(maxlen=self.params.smoothing_windows)

    def retune(self, params: DecisionParams) -> None:
        """New parameters mid-stream (a schedule or a reloaded model); an open event carries on."""
        self.params = params
        if self._recent.maxlen != params.patience_of:
            self._recent = collections.deque(self._recent, maxlen=params.patience_of)
        if self._scores.maxlen != params.smoothing_windows:
            self._scores = collections.deque(self._scores, maxlen=params.smoothing_windows)

    @property
    def active_event(self) -> Event | None:
        return self._active

    def update(self, score: float, window_start_s: float, window_end_s: float) -> list[Transition]:
        """Feed one window's score; returns the events that start or end with it. With smoothing,
        the thresholds meet the mean of the last m scores (fewer at the start of a stream); an
        event's peak stays the highest single-window score."""
        p = self.params
        out: list[Transition] = []
        raw = score
        self._scores.append(score)
        if p.smoothing_windows > 1:
            score = sum(self._scores) / len(self._scores)
        self.decision_score = score
        if self._active is not None:
            event = self._active
            event.peak_score = max(event.peak_score, raw)
            if score >= p.off_threshold:
                self._last_above_off_s = window_end_s
            min_end = event.start_s + p.min_event_s
            if window_end_s - event.start_s >= p.max_event_s:
                out.append(self._end(event.start_s + p.max_event_s, "max_event_s"))
            elif score < p.off_threshold and window_end_s >= min_end:
                out.append(self._end(max(self._last_above_off_s, min_end), "score"))
            return out
        self._recent.append((window_start_s, score >= p.on_threshold))
        hits = [start for start, hit in self._recent if hit]
        if len(hits) >= p.patience_windows and window_end_s >= self._cooldown_until_s:
            self._count += 1
            self._active = Event(self._count, hits[0], window_end_s, max(self._scores))
            self._last_above_off_s = window_end_s
            self._recent.clear()
            out.append(EventStarted(self._active))
        return out

    def finish(self, end_s: float) -> list[Transition]:
        """Close an open event at the end of the stream."""
        if self._active is None:
            return []
        p = self.params
        end = min(max(self._last_above_off_s, self._active.start_s + p.min_event_s), end_s)
        return [self._end(max(end, self._active.start_s), "end_of_stream")]

    def _end(self, end_s: float, reason: str) -> EventEnded:
        assert self._active is not None
        event = self._active
        event.end_s = end_s
        event.ended_by = reason
        self._active = None
        self._cooldown_until_s = end_s + self.params.cooldown_s
        self._recent.clear()
        return EventEnded(event)
