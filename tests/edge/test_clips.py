"""The clip path on its own: the pre-roll ring, the cutter that waits for the post-roll, and the clip
store's bounds (count, bytes, free disk, labelled clips kept). Sample values are their own stream
positions, so every cut is checked sample for sample. Fast enough for `make mutation` per mutant."""

from __future__ import annotations

import collections
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest

from edge.audio import open_audio
from edge.clips import AudioRing, ClipCutter
from edge.config import ClipsConfig
from edge.labels import LabelStore
from edge.sinks import AlarmMessage, ClipMessage, ClipSaver

RATE = 100  # samples per second: a sample's value is its stream index
CLIPS = frozenset({"clips"})


def stream(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.float32)


def test_the_ring_cuts_by_stream_time_across_chunks() -> None:
    ring = AudioRing(capacity_s=10.0)
    assert ring.end_s == 0.0 and ring.extract(0.0, 10.0).size == 0  # before the first reset: no rate, no time
    with pytest.raises(RuntimeError, match=r"^AudioRing.append before reset\(\): the ring does not know"):
        ring.append(stream(0, 50))
    ring.reset(RATE, at_s=2.0)  # the source opened 2 s into the stream
    for _ in range(3):
        ring.append(stream(round(ring.end_s * RATE), 50))
    assert ring.end_s == 3.5
    np.testing.assert_array_equal(ring.extract(2.3, 3.1), stream(230, 80))  # spans all three chunks
    np.testing.assert_array_equal(ring.extract(1.0, 2.2), stream(200, 20))  # before it opened: what exists
    np.testing.assert_array_equal(ring.extract(3.4, 9.0), stream(340, 10))
    assert ring.extract(4.0, 5.0).size == 0 and ring.extract(4.0, 5.0).dtype == np.float32
    np.testing.assert_array_equal(ring.extract(2.004, 2.026), stream(200, 3))  # rounded to the nearest sample


def test_the_ring_forgets_only_chunks_wholly_older_than_its_capacity() -> None:
    ring = AudioRing(capacity_s=1.0)
    ring.reset(RATE, at_s=0.0)
    for k in range(4):
        ring.append(stream(60 * k, 60))  # 0.6 s chunks: 0-0.6, 0.6-1.2, 1.2-1.8, 1.8-2.4
    # The last second starts at 1.4 s, inside the third chunk: the first two are gone, the third stays whole.
    np.testing.assert_array_equal(ring.extract(0.0, 2.4), stream(120, 120))
    ring.append(stream(240, 40))  # to 2.8 s: the last second starts at 1.8, exactly where chunk four begins
    np.testing.assert_array_equal(ring.extract(0.0, 2.8), stream(180, 100))


def test_a_reset_starts_a_new_stream_at_its_own_time() -> None:
    ring = AudioRing(capacity_s=5.0)
    ring.reset(RATE, at_s=0.0)
    ring.append(stream(0, 100))
    ring.reset(200, at_s=7.5)
    assert ring.rate_hz == 200 and ring.end_s == 7.5 and ring.extract(0.0, 100.0).size == 0
    ring.append(stream(1500, 100))
    np.testing.assert_array_equal(ring.extract(7.5, 8.0), stream(1500, 100))


def cutter(**changes: float | bool) -> ClipCutter:
    return ClipCutter(ClipsConfig(**{"pre_roll_s": 1.0, "post_roll_s": 0.5, **changes}), max_event_s=3.0)  # type: ignore[arg-type]


def test_the_ring_holds_the_longest_clip_and_five_seconds_more() -> None:
    assert cutter().ring.capacity_s == 1.0 + 3.0 + 0.5 + 5.0


def test_an_ended_event_is_cut_once_its_post_roll_has_been_heard() -> None:
    cut = cutter()
    cut.ring.reset(RATE, at_s=0.0)
    cut.ring.append(stream(0, 300))
    record = {"id": "e1", "start_stream_s": 1.5, "clip": "e1.wav"}
    cut.event_ended(record, end_s=2.8, outputs=CLIPS)
    record["id"] = "changed later"  # the clip keeps the event as it was when it ended
    assert cut.ready() == []  # the post-roll runs to 3.3 s; the stream is at 3.0
    cut.ring.append(stream(300, 29))
    assert cut.ready() == []
    cut.ring.append(stream(329, 1))  # now at 3.3 s exactly
    (message,) = cut.ready()
    assert message.event == {"id": "e1", "start_stream_s": 1.5, "clip": "e1.wav"}
    assert message.sample_rate_hz == RATE and message.outputs == CLIPS
    np.testing.assert_array_equal(message.samples, stream(50, 280))  # 0.5 s (pre-roll) to 3.3 s
    assert cut.ready() == []  # handed over once


def test_an_event_near_the_start_has_the_pre_roll_there_is_and_force_cuts_the_rest() -> None:
    cut = cutter()
    cut.ring.reset(RATE, at_s=0.0)
    cut.ring.append(stream(0, 200))
    cut.event_ended({"id": "a", "start_stream_s": 0.4}, end_s=1.0, outputs=CLIPS)
    cut.event_ended({"id": "b", "start_stream_s": 1.6}, end_s=1.9, outputs=frozenset())
    (first,) = cut.ready()
    np.testing.assert_array_equal(first.samples, stream(0, 150))  # from 0 (not -0.6 s) to 1.5 s
    (second,) = cut.ready(force=True)  # the stream ended before b's post-roll: what there is
    assert second.event["id"] == "b" and second.outputs == frozenset()
    np.testing.assert_array_equal(second.samples, stream(60, 140))


def test_no_clip_without_audio_or_with_clips_off() -> None:
    cut = cutter()
    cut.ring.reset(RATE, at_s=0.0)
    cut.event_ended({"id": "a", "start_stream_s": 0.0}, end_s=0.5, outputs=CLIPS)
    assert cut.ready(force=True) == []  # nothing was heard
    off = cutter(enabled=False)
    off.ring.reset(RATE, at_s=0.0)
    off.ring.append(stream(0, 500))
    off.event_ended({"id": "a", "start_stream_s": 1.0}, end_s=2.0, outputs=CLIPS)
    assert off.ready(force=True) == []


def clip(name: str, seconds: float = 1.0, outputs: frozenset[str] = CLIPS) -> ClipMessage:
    samples = (0.5 * np.sin(np.arange(int(16000 * seconds)) / 7.0)).astype(np.float32)
    return ClipMessage({"id": name, "clip": f"{name}.wav"}, samples, 16000, outputs)


def stored(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def age(folder: Path, *names: str) -> None:
    """Give the named clips increasing modification times, oldest first."""
    for k, name in enumerate(names):
        os.utime(folder / f"{name}.wav", (1000 + k, 1000 + k))


def two_clips(folder: Path) -> ClipSaver:
    """A saver bounded to two clips, with a.wav and b.wav saved, a the older."""
    saver = ClipSaver(ClipsConfig(max_count=2, min_free_bytes=0), folder)
    for name in "ab":
        saver.handle(clip(name))
    age(folder, "a", "b")
    return saver


def test_a_saved_clip_is_the_events_audio_and_no_part_file_is_left(tmp_path: Path) -> None:
    saver = ClipSaver(ClipsConfig(min_free_bytes=0), tmp_path / "clips")
    message = clip("e1", 0.5)
    saver.handle(message)
    assert stored(tmp_path / "clips") == ["e1.wav"]
    audio = open_audio(tmp_path / "clips" / "e1.wav")
    assert audio.sample_rate_hz == 16000
    np.testing.assert_allclose(audio.read_all(), message.samples, atol=1 / 32767)
    assert (tmp_path / "clips" / "e1.wav").stat().st_size == 44 + 2 * 8000
    assert saver.health() == {"saved": 1, "skipped": 0, "deleted": 0}


def test_only_clip_messages_meant_for_clips_are_saved(tmp_path: Path) -> None:
    saver = ClipSaver(ClipsConfig(min_free_bytes=0), tmp_path)
    saver.handle(clip("muted", outputs=frozenset({"led", "buzzer"})))  # the schedule leaves clips out
    saver.handle(AlarmMessage("end", {"id": "x", "clip": "x.wav"}, CLIPS))
    assert stored(tmp_path) == [] and saver.health() == {"saved": 0, "skipped": 0, "deleted": 0}


def test_the_count_bound_deletes_the_oldest_first(tmp_path: Path) -> None:
    saver = ClipSaver(ClipsConfig(max_count=3, min_free_bytes=0), tmp_path)
    for name in ("b", "a", "c"):
        saver.handle(clip(name))
    age(tmp_path, "b", "a", "c")
    saver.handle(clip("d"))
    assert stored(tmp_path) == ["a.wav", "c.wav", "d.wav"]  # b was the oldest, whatever its name
    os.utime(tmp_path / "a.wav", (5000, 5000))
    os.utime(tmp_path / "c.wav", (5000, 5000))
    os.utime(tmp_path / "d.wav", (5000, 5000))
    saver.handle(clip("e"))  # equal times: the name decides
    assert stored(tmp_path) == ["c.wav", "d.wav", "e.wav"]
    assert saver.health() == {"saved": 5, "skipped": 0, "deleted": 2}


def test_the_byte_bound_deletes_as_many_as_the_new_clip_needs(tmp_path: Path) -> None:
    one = 44 + 2 * 16000  # a 1 s clip
    saver = ClipSaver(ClipsConfig(max_bytes=3 * one, min_free_bytes=0), tmp_path)
    for name in "abc":
        saver.handle(clip(name))
    age(tmp_path, "a", "b", "c")
    assert stored(tmp_path) == ["a.wav", "b.wav", "c.wav"]  # exactly at the bound: all kept
    saver.handle(clip("d", 2.0))  # needs two clips' room
    assert stored(tmp_path) == ["c.wav", "d.wav"] and saver.deleted == 2


def test_a_clip_larger_than_the_whole_budget_is_skipped_and_nothing_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    one = 44 + 2 * 16000
    saver = ClipSaver(ClipsConfig(max_bytes=one, min_free_bytes=0), tmp_path)
    saver.handle(clip("a"))  # exactly the budget: saved
    with caplog.at_level(logging.WARNING, logger="scream"):
        saver.handle(clip("b", 1.01))
    assert stored(tmp_path) == ["a.wav"] and saver.health() == {"saved": 1, "skipped": 1, "deleted": 0}
    assert caplog.messages == ["clip of b is larger than clips.max_bytes; not saved"]


def test_the_free_disk_margin_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    one = 44 + 2 * 16000
    free = [10 * one]
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr("edge.sinks.shutil.disk_usage", lambda _: usage(10**12, 0, free[0]))
    saver = ClipSaver(ClipsConfig(min_free_bytes=8 * one), tmp_path)
    for name in "ab":
        saver.handle(clip(name))
        free[0] -= one
    age(tmp_path, "a", "b")
    assert stored(tmp_path) == ["a.wav", "b.wav"]  # 10 free, 8 kept free: room for exactly two
    saver.handle(clip("c"))  # one more would leave 7: the oldest makes room
    assert stored(tmp_path) == ["b.wav", "c.wav"] and saver.deleted == 1
    free[0] = 3 * one  # something else filled the disk: deleting every clip frees too little
    with caplog.at_level(logging.WARNING, logger="scream"):
        saver.handle(clip("d"))
    assert stored(tmp_path) == [] and saver.health() == {"saved": 3, "skipped": 1, "deleted": 3}
    assert caplog.messages == ["disk below clips.min_free_bytes; clip of d not saved"]
    saver.handle(clip("e"))  # every skip counts
    assert saver.health() == {"saved": 3, "skipped": 2, "deleted": 3}


@pytest.mark.parametrize(
    "free_in_clips, why",
    [
        (8.5, "disk below clips.min_free_bytes"),  # 7.5 clips' room would be left: under the 8 kept free
        (9.0, "the clip store is full of 2 labelled clip(s) not yet fetched (scream pull)"),  # exactly 8 left
    ],
)
def test_a_skip_names_the_disk_only_when_the_clip_would_cut_into_its_margin(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    free_in_clips: float,
    why: str,
) -> None:
    one = 44 + 2 * 16000
    saver = ClipSaver(ClipsConfig(max_count=2, min_free_bytes=0), tmp_path)
    for name in "ab":
        saver.handle(clip(name))
    LabelStore(tmp_path).set("a.wav", "scream")
    LabelStore(tmp_path).set("b.wav", "non_scream")
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr("edge.sinks.shutil.disk_usage", lambda _: usage(10**12, 0, int(free_in_clips * one)))
    saver = ClipSaver(ClipsConfig(max_count=2, min_free_bytes=8 * one), tmp_path)
    with caplog.at_level(logging.WARNING, logger="scream"):
        saver.handle(clip("c"))
    assert caplog.messages == [f"{why}; clip of c not saved"]


def test_labelled_clips_not_yet_fetched_are_kept_and_the_skip_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    saver = two_clips(tmp_path)
    LabelStore(tmp_path).set("a.wav", "scream")
    LabelStore(tmp_path).set("b.wav", "non_scream")
    with caplog.at_level(logging.WARNING, logger="scream"):
        saver.handle(clip("c"))
    assert stored(tmp_path) == ["a.wav", "b.wav", "labels.tsv"]
    assert caplog.messages == [
        "the clip store is full of 2 labelled clip(s) not yet fetched (scream pull); clip of c not saved"
    ]
    LabelStore(tmp_path).mark_exported(["a.wav"])
    time.sleep(0.01)
    saver.handle(clip("c"))
    assert stored(tmp_path) == ["b.wav", "c.wav", "labels.tsv"]


def test_clip_retention_under_a_tiny_quota_on_the_real_disk(tmp_path: Path) -> None:
    saver = ClipSaver(ClipsConfig(max_count=2, max_bytes=100_000, min_free_bytes=0), tmp_path)
    all_outputs = frozenset({"clips"})
    for i in range(4):
        event = {"id": f"e{i}", "clip": f"clip{i}.wav"}
        saver.handle(ClipMessage(event, np.zeros(16000, np.float32), 16000, all_outputs))
        time.sleep(0.01)
    assert sorted(p.name for p in tmp_path.glob("*.wav")) == ["clip2.wav", "clip3.wav"]
    # 32 KB each: a 100 KB budget holds three, so a 48 KB clip forces two deletions.
    saver = ClipSaver(ClipsConfig(max_count=10, max_bytes=100_000, min_free_bytes=0), tmp_path)
    saver.handle(ClipMessage({"id": "big", "clip": "big.wav"}, np.zeros(24000, np.float32), 16000, all_outputs))
    assert sorted(p.name for p in tmp_path.glob("*.wav")) == ["big.wav", "clip3.wav"]
    # Never fill the disk: with a free-space margin larger than the disk, nothing is written.
    full = ClipSaver(ClipsConfig(min_free_bytes=10**13), tmp_path / "full")
    full.handle(ClipMessage({"id": "x", "clip": "x.wav"}, np.zeros(100, np.float32), 16000, all_outputs))
    assert full.skipped == 1 and not list((tmp_path / "full").glob("*.wav"))


def test_the_clip_store_is_made_with_its_parents_and_every_skip_is_counted(tmp_path: Path) -> None:
    one = 44 + 2 * 16000
    folder = tmp_path / "var" / "lib" / "clips"
    saver = ClipSaver(ClipsConfig(max_bytes=one, min_free_bytes=0), folder)
    assert folder.is_dir()
    for name in ("big1", "big2", "big3"):
        saver.handle(clip(name, 1.5))
    assert saver.health() == {"saved": 0, "skipped": 3, "deleted": 0}


def test_a_lowered_count_bound_deletes_one_clip_at_a_time_until_there_is_room(tmp_path: Path) -> None:
    for name in "abcd":
        ClipSaver(ClipsConfig(max_count=10, min_free_bytes=0), tmp_path).handle(clip(name))
    age(tmp_path, "a", "b", "c", "d")
    saver = ClipSaver(ClipsConfig(max_count=3, min_free_bytes=0), tmp_path)  # the bound lowered by a reload
    saver.handle(clip("e"))
    assert stored(tmp_path) == ["c.wav", "d.wav", "e.wav"] and saver.deleted == 2


def test_a_clip_removed_while_the_store_makes_room_is_counted_as_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saver = two_clips(tmp_path)
    real = LabelStore.protected

    def protected_while_someone_deletes_a(self: LabelStore) -> set[str]:
        (tmp_path / "a.wav").unlink()  # e.g. removed by hand between listing and deleting
        return real(self)

    monkeypatch.setattr(LabelStore, "protected", protected_while_someone_deletes_a)
    saver.handle(clip("c"))
    assert stored(tmp_path) == ["b.wav", "c.wav"]
    assert saver.health() == {"saved": 3, "skipped": 0, "deleted": 1}


def test_a_clip_gone_before_it_is_looked_at_is_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saver = two_clips(tmp_path)
    listed = [tmp_path / "vanished.wav", *tmp_path.glob("*.wav")]  # first: the ones after it still count
    monkeypatch.setattr(Path, "glob", lambda self, pattern: iter(listed))
    saver.handle(clip("c"))  # two clips and one that is not there: the count bound sees two
    assert stored(tmp_path) == ["b.wav", "c.wav"] and saver.deleted == 1
