"""What `scream status` calls a problem, branch by branch, from hand-made status snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.health import STALE_AFTER_S, Health, problems_in, read_status

NOW = 1_000_000.0


def healthy(**changes: object) -> dict:  # type: ignore[type-arg]
    status = {"updated_at": NOW - 1, "device_state": "ok", "last_audio_at": NOW - 1, "outputs": {}}
    return status | changes


def test_a_fresh_ok_status_has_no_problem() -> None:
    assert problems_in(healthy(), now=NOW) == []


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"updated_at": NOW - STALE_AFTER_S - 5}, f"status not updated for {STALE_AFTER_S + 5:.0f} s (service down?)"),
        ({"device_state": "retrying", "last_device_error": "unplugged"}, "audio device retrying: unplugged"),
        ({"device_state": "stopped"}, "audio device stopped"),
        ({"last_audio_at": NOW - STALE_AFTER_S - 3}, f"no audio for {STALE_AFTER_S + 3:.0f} s"),
        (
            {"last_reload_error": "sha256 mismatch", "reload_errors": 2, "model_sha256": "ab" * 32},
            "model reload refused (2 so far), still running abababababab: sha256 mismatch",
        ),
    ],
)
def test_each_service_problem_is_named(changes: dict, expected: str) -> None:  # type: ignore[type-arg]
    assert problems_in(healthy(**changes), now=NOW) == [expected]


def test_the_stale_limit_is_inclusive_of_its_boundary() -> None:
    assert problems_in(healthy(updated_at=NOW - STALE_AFTER_S, last_audio_at=NOW - STALE_AFTER_S), now=NOW) == []


@pytest.mark.parametrize(
    "output, expected",
    [
        ({"unavailable": "BadPinFactory: no pins"}, ["output gpio unavailable: BadPinFactory: no pins"]),
        ({"connected": False, "pending": 4}, ["output gpio not connected (4 alerts waiting)"]),
        (
            {"connected": True, "pending": 3, "last_delivery_error": "HTTP 500"},
            ["output gpio: 3 alerts waiting: HTTP 500"],
        ),
        ({"connected": True, "pending": 3, "last_delivery_error": ""}, []),  # queued, nothing wrong yet
        ({"pending": 0, "last_delivery_error": "old"}, []),  # nothing waits: an old error is history
        (
            {"pending": 2, "oldest_pending_s": 301.0, "alert_after_s": 300.0},
            ["output gpio: the oldest of 2 alerts has waited 301 s (more than outbox.alert_after_s = 300 s)"],
        ),
        ({"pending": 2, "oldest_pending_s": 300.0, "alert_after_s": 300.0}, []),
        # One waiting alert is already a problem when it cannot go out or has waited too long.
        (
            {"connected": True, "pending": 1, "last_delivery_error": "HTTP 503"},
            ["output gpio: 1 alerts waiting: HTTP 503"],
        ),
        (
            {"pending": 1, "oldest_pending_s": 400.0, "alert_after_s": 300.0},
            ["output gpio: the oldest of 1 alerts has waited 400 s (more than outbox.alert_after_s = 300 s)"],
        ),
        ({"delivering": False}, ["output gpio: its delivery thread has stopped"]),
        ({"delivering": True, "handled": 5}, []),
    ],
)
def test_each_output_problem_is_named(output: dict, expected: list[str]) -> None:  # type: ignore[type-arg]
    assert problems_in(healthy(outputs={"gpio": output, "notes": "not a table"}), now=NOW) == expected


def test_the_status_file_is_written_atomically_and_read_back(tmp_path: Path) -> None:
    health = Health(device="usb mic", device_state="ok", events=3)
    path = tmp_path / "state" / "status.json"
    health.write(path)
    data = read_status(path)
    assert data["device"] == "usb mic" and data["events"] == 3 and data["uptime_s"] >= 0
    assert data["updated_at"] == health.updated_at > 0 and not path.with_name("status.json.tmp").exists()
    assert json.loads(path.read_text()) == data


def test_a_status_missing_its_times_counts_them_from_zero() -> None:
    assert problems_in({}, now=NOW) == [f"status not updated for {NOW:.0f} s (service down?)", "audio device None"]
    no_audio = problems_in(healthy(last_audio_at=None) | {"last_audio_at": 0}, now=NOW)
    assert no_audio == [f"no audio for {NOW:.0f} s"]
    assert problems_in({k: v for k, v in healthy().items() if k != "last_audio_at"}, now=NOW) == [
        f"no audio for {NOW:.0f} s"
    ]


def test_without_a_time_given_it_judges_now() -> None:
    import time

    fresh = {"updated_at": time.time(), "device_state": "ok", "last_audio_at": time.time(), "outputs": {}}
    assert problems_in(fresh) == []
    assert problems_in(fresh | {"updated_at": time.time() - 60})[0].startswith("status not updated for 60 s")


def test_uptime_and_nested_folders(tmp_path: Path) -> None:
    import time

    health = Health(started_at=time.time() - 12.34)
    uptime = health.to_json()["uptime_s"]
    assert isinstance(uptime, float) and uptime == pytest.approx(12.3, abs=0.06)
    deep = tmp_path / "a" / "b" / "status.json"
    health.write(deep)  # creates the missing folders
    assert sorted(p.name for p in deep.parent.iterdir()) == ["status.json"]  # no temporary file left


def test_problem_texts_fill_in_what_a_status_lacks() -> None:
    refused = problems_in(healthy(last_reload_error="bad file"), now=NOW)
    assert refused == ["model reload refused (0 so far), still running : bad file"]
    odd_first = {"notes": "not a table", "mqtt": {"connected": False}}  # a non-table output is passed over
    assert problems_in(healthy(outputs=odd_first), now=NOW) == ["output mqtt not connected (0 alerts waiting)"]


def test_uptime_has_one_decimal_and_writing_twice_reuses_the_folder(tmp_path: Path) -> None:
    import time

    started = time.time() - 12.3456
    before = time.time()
    uptime = Health(started_at=started).to_json()["uptime_s"]
    after = time.time()
    # One decimal, of the time since the start as the clock read it in between (a loaded machine
    # may take a while between the reads, so no fixed window around 12.3).
    assert uptime == round(uptime, 1) and round(before - started, 1) <= uptime <= round(after - started, 1)
    health = Health()
    health.write(tmp_path / "s" / "status.json")
    health.write(tmp_path / "s" / "status.json")  # the folder exists now: still written
    assert read_status(tmp_path / "s" / "status.json")["pid"] == health.pid
