"""labels.tsv and the event index: atomic, restart-proof labels; rotated logs joined; retention
keeps labelled clips until `scream pull` has fetched them."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from edge.config import ClipsConfig
from edge.labels import EventIndex, LabelError, LabelStore, check_clip_name, read_event_log
from edge.sinks import ClipMessage, ClipSaver

NOW = dt.datetime(2026, 12, 2, 10, 30, tzinfo=dt.UTC)


def test_labels_survive_a_new_store_and_the_last_label_wins(tmp_path: Path) -> None:
    store = LabelStore(tmp_path)
    store.set("20261202T101500_aaaaaaaaaaaa.wav", "scream", now=NOW)
    store.set("20261202T101600_bbbbbbbbbbbb.wav", "unsure", note="a\tdoor?\nmaybe", now=NOW)
    store.set("20261202T101500_aaaaaaaaaaaa.wav", "non_scream", note="the parrot", now=NOW)
    again = LabelStore(tmp_path).load()  # as after a restart
    assert {k: (v.label, v.note) for k, v in again.items()} == {
        "20261202T101500_aaaaaaaaaaaa.wav": ("non_scream", "the parrot"),
        "20261202T101600_bbbbbbbbbbbb.wav": ("unsure", "a door? maybe"),  # no tab or newline in a cell
    }
    assert again["20261202T101500_aaaaaaaaaaaa.wav"].time == "2026-12-02T10:30:00+00:00"
    lines = (tmp_path / "labels.tsv").read_text().splitlines()
    assert lines[0] == "clip\tlabel\ttime\tnote\texported" and len(lines) == 3
    assert not list(tmp_path.glob(".labels.*"))  # the temporary file was renamed, not left


def test_a_write_that_fails_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LabelStore(tmp_path)
    store.set("20261202T101500_aaaaaaaaaaaa.wav", "scream", now=NOW)
    before = (tmp_path / "labels.tsv").read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        store.set("20261202T101600_bbbbbbbbbbbb.wav", "scream", now=NOW)
    assert (tmp_path / "labels.tsv").read_bytes() == before
    assert not list(tmp_path.glob(".labels.*"))


def test_concurrent_labels_from_the_page_threads_are_all_kept(tmp_path: Path) -> None:
    store = LabelStore(tmp_path)
    names = [f"20261202T1015{i:02d}_{i:012d}.wav" for i in range(40)]
    threads = [threading.Thread(target=store.set, args=(n, "non_scream")) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(store.load()) == names


@pytest.mark.parametrize(
    "name", ["../labels.tsv", "a/b.wav", "..wav", "x.wav/..", "/etc/passwd", "clip.mp3", "", ".hidden.wav"]
)
def test_only_bare_clip_names_are_accepted(name: str) -> None:
    with pytest.raises(LabelError, match="not a clip name"):
        check_clip_name(name)


def test_unknown_label_and_a_damaged_file_are_clear_errors(tmp_path: Path) -> None:
    store = LabelStore(tmp_path)
    with pytest.raises(LabelError, match=r"unknown label 'maybe'.*scream, non_scream, unsure"):
        store.set("20261202T101500_aaaaaaaaaaaa.wav", "maybe")
    (tmp_path / "labels.tsv").write_text("this is not\ta labels file\n")
    with pytest.raises(LabelError, match="is not a labels file"):
        store.load()
    assert store.protected() == set()  # retention goes on; the page reports the damage


def test_protected_means_labelled_for_training_and_not_yet_fetched(tmp_path: Path) -> None:
    store = LabelStore(tmp_path)
    store.set("20261202T100000_aaaaaaaaaaaa.wav", "scream", now=NOW)
    store.set("20261202T100100_bbbbbbbbbbbb.wav", "non_scream", now=NOW)
    store.set("20261202T100200_cccccccccccc.wav", "unsure", now=NOW)
    assert store.protected() == {"20261202T100000_aaaaaaaaaaaa.wav", "20261202T100100_bbbbbbbbbbbb.wav"}
    marked = store.mark_exported(["20261202T100000_aaaaaaaaaaaa.wav", "20261202T109999_zzzzzzzzzzzz.wav"], now=NOW)
    assert marked == ["20261202T100000_aaaaaaaaaaaa.wav"]
    assert store.protected() == {"20261202T100100_bbbbbbbbbbbb.wav"}
    assert store.load()["20261202T100000_aaaaaaaaaaaa.wav"].exported == "2026-12-02T10:30:00+00:00"
    store.set("20261202T100000_aaaaaaaaaaaa.wav", "non_scream", now=NOW)  # relabelled: due for export again
    assert "20261202T100000_aaaaaaaaaaaa.wav" in store.protected()


def _clip(saver: ClipSaver, name: str, seconds: float = 1.0) -> None:
    samples = np.zeros(int(16000 * seconds), np.float32)
    saver.handle(ClipMessage({"id": name[-16:-4], "clip": name}, samples, 16000, frozenset({"clips"})))


def test_retention_deletes_unlabelled_clips_first_and_keeps_labelled_ones(tmp_path: Path) -> None:
    saver = ClipSaver(ClipsConfig(max_count=3, max_bytes=10**9, min_free_bytes=0), tmp_path)
    names = [f"20261202T1000{i:02d}_{i:012d}.wav" for i in range(6)]
    for i, name in enumerate(names[:3]):
        _clip(saver, name)
        os.utime(tmp_path / name, (1000 + i, 1000 + i))  # oldest first, whatever the file system's clock
    LabelStore(tmp_path).set(names[0], "scream")  # the oldest clip is labelled
    _clip(saver, names[3])
    assert sorted(p.name for p in tmp_path.glob("*.wav")) == [names[0], names[2], names[3]]
    LabelStore(tmp_path).set(names[2], "non_scream")
    LabelStore(tmp_path).set(names[3], "non_scream")
    _clip(saver, names[4])  # the store holds only labelled clips: the new one is skipped, none deleted
    assert sorted(p.name for p in tmp_path.glob("*.wav")) == [names[0], names[2], names[3]]
    assert (saver.saved, saver.deleted, saver.skipped) == (4, 1, 1)
    LabelStore(tmp_path).mark_exported([names[0]])
    _clip(saver, names[5])  # fetched: the oldest may go again
    assert sorted(p.name for p in tmp_path.glob("*.wav")) == [names[2], names[3], names[5]]


def test_the_event_log_and_its_rotated_backups_are_joined_newest_record_first(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    start = {"type": "event_start", "id": "a1", "clip": "20261202T100000_a1.wav", "start": 1000.0, "end": None}
    end = {**start, "type": "event_end", "end": 1002.5, "peak_score": 0.97, "site": "hall"}
    other = {"type": "event_end", "id": "b2", "clip": "20261202T110000_b2.wav", "start": 5000.0, "peak_score": 0.9}
    (tmp_path / "events.jsonl.2").write_text(json.dumps(start) + "\n")
    (tmp_path / "events.jsonl.1").write_text(json.dumps(end) + "\nnot json\n")
    log.write_text(json.dumps(other) + "\n")
    records, problems = read_event_log(log)
    assert records["20261202T100000_a1.wav"]["end"] == 1002.5  # the end record wins over the start
    assert records["20261202T100000_a1.wav"]["site"] == "hall"
    assert problems == ["events.jsonl.1:2 is not JSON"]


def test_index_lists_clips_on_disk_and_gone_ones_and_those_whose_log_rotated_away(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "20261202T100000_aaaaaaaaaaaa.wav").write_bytes(b"RIFF")
    (clips / "20261201T090000_bbbbbbbbbbbb.wav").write_bytes(b"RIFF")  # no record left in the log
    (clips / "notes.txt").write_text("not a clip")
    log = tmp_path / "events.jsonl"
    ten, eleven = dt.datetime(2026, 12, 2, 10, 0).timestamp(), dt.datetime(2026, 12, 2, 11, 0).timestamp()
    records = [
        {
            "type": "event_end",
            "clip": "20261202T100000_aaaaaaaaaaaa.wav",
            "start": ten,
            "end": ten + 3.0,
            "peak_score": 0.95,
            "site": "hall",
            "id": "aaaaaaaaaaaa",
        },
        {"type": "event_end", "clip": "20261202T110000_cccccccccccc.wav", "start": eleven, "peak_score": 0.9},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    index = EventIndex(clips, log)
    index.labels.set("20261202T100000_aaaaaaaaaaaa.wav", "scream")
    events, problems = index.events()
    by_name = {e.clip: e for e in events}
    assert [e.clip for e in events] == [  # newest first
        "20261202T110000_cccccccccccc.wav",
        "20261202T100000_aaaaaaaaaaaa.wav",
        "20261201T090000_bbbbbbbbbbbb.wav",
    ]
    assert by_name["20261202T110000_cccccccccccc.wav"].exists is False
    a = by_name["20261202T100000_aaaaaaaaaaaa.wav"].to_json()
    assert (a["exists"], a["peak_score"], a["duration_s"], a["site"], a["label"]) == (True, 0.95, 3.0, "hall", "scream")
    b = by_name["20261201T090000_bbbbbbbbbbbb.wav"]
    assert b.start == dt.datetime(2026, 12, 1, 9, 0).timestamp() and b.day == "2026-12-01"  # from its name
    assert problems == []
    with pytest.raises(LabelError):
        index.clip_path("../events.jsonl")
