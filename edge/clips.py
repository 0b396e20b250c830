"""Event clips for `scream listen`: the pre-roll ring of recent audio, and each ended event's audio
(pre-roll, event, post-roll) handed to the outputs once the post-roll has been heard."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.config import ClipsConfig
from edge.sinks import ClipMessage

FloatArray = npt.NDArray[np.float32]


class AudioRing:
    """The last `capacity_s` seconds of source audio, for clip pre-roll (stream time in seconds)."""

    _next: int  # the stream sample the next chunk starts at, set by reset()

    def __init__(self, capacity_s: float) -> None:
        self.capacity_s = capacity_s
        self._chunks: collections.deque[tuple[int, FloatArray]] = collections.deque()
        self.rate_hz = 0  # no stream yet: reset() comes before the first append()

    def reset(self, rate_hz: int, at_s: float) -> None:
        """A new stream (or a reopened device) at `rate_hz`, whose first sample is at `at_s`."""
        self._chunks.clear()
        self.rate_hz = rate_hz
        self._next = round(at_s * rate_hz)

    def append(self, chunk: FloatArray) -> None:
        if not self.rate_hz:
            raise RuntimeError("AudioRing.append before reset(): the ring does not know the stream's rate")
        self._chunks.append((self._next, chunk))
        self._next += chunk.size
        keep_from = self._next - int(self.capacity_s * self.rate_hz)
        while self._chunks and self._chunks[0][0] + self._chunks[0][1].size <= keep_from:
            self._chunks.popleft()

    @property
    def end_s(self) -> float:
        return self._next / self.rate_hz if self.rate_hz else 0.0

    def extract(self, from_s: float, until_s: float) -> FloatArray:
        lo, hi = round(from_s * self.rate_hz), round(until_s * self.rate_hz)
        parts = []
        for start, chunk in self._chunks:
            a, b = max(lo, start), min(hi, start + chunk.size)
            if b > a:
                parts.append(chunk[a - start : b - start])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


@dataclass
class PendingClip:
    event: dict[str, Any]
    from_s: float
    until_s: float
    outputs: frozenset[str]


class ClipCutter:
    """Keeps enough audio for the longest event's clip and cuts each ended event's clip."""

    def __init__(self, config: ClipsConfig, max_event_s: float) -> None:
        self.config = config
        self.ring = AudioRing(config.pre_roll_s + max_event_s + config.post_roll_s + 5.0)
        self._pending: list[PendingClip] = []

    def event_ended(self, record: dict[str, Any], end_s: float, outputs: frozenset[str]) -> None:
        """Queue the clip of an ended event (`record` holds its `start_stream_s`), if clips are on."""
        if self.config.enabled:
            c = self.config
            start = max(0.0, record["start_stream_s"] - c.pre_roll_s)
            self._pending.append(PendingClip(dict(record), start, end_s + c.post_roll_s, outputs))

    def ready(self, *, force: bool = False) -> list[ClipMessage]:
        """Clips whose post-roll has been heard (all of them with `force`: the stream ends)."""
        done = [p for p in self._pending if force or self.ring.end_s >= p.until_s]
        self._pending = [p for p in self._pending if p not in done]
        messages = []
        for pending in done:
            samples = self.ring.extract(pending.from_s, pending.until_s)
            if samples.size:
                messages.append(ClipMessage(pending.event, samples, self.ring.rate_hz, pending.outputs))
        return messages
