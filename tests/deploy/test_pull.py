"""`scream deploy pull` against the test sshd on 127.0.0.1: a device whose `listen` saved clips
and whose owner labelled some in `scream review`; the clips arrive as corpus manifest rows that
`scream train` reads, the device learns they were fetched (retention may delete them), a second
pull fetches nothing, and an unreachable host changes nothing."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from deploy.pull import pull
from deploy.remote import Target
from edge.config import load_config
from edge.labels import EventIndex, LabelStore
from tests.deploy.conftest import SCREAM, SshServer
from tests.helpers import copy_clip_store


def site_device(tmp_path: Path, clip_store_config: Path, sshd: SshServer) -> tuple[Target, Path]:
    """A device root whose config points at a copy of the store `listen` wrote."""
    root = tmp_path / "device"
    state = root / "var/lib/scream-detector"
    copy_clip_store(clip_store_config, state, root / "etc/scream-detector/config.toml")
    return sshd.target(root=str(root), remote_scream=SCREAM), state / "clips"


def test_pull_fetches_labelled_clips_into_a_manifest_and_marks_them(
    tmp_path: Path, clip_store_config: Path, sshd: SshServer
) -> None:
    target, clips = site_device(tmp_path, clip_store_config, sshd)
    config = load_config(Path(target.config))
    names = [e.clip for e in EventIndex(clips, config.state_path("events.jsonl")).events()[0]]
    store = LabelStore(clips)
    store.set(names[0], "scream", note="child fell")
    store.set(names[1], "non_scream", note="the parrot")
    store.set(names[2], "unsure")  # not training data: stays on the device, unfetched
    # The second clip was a candidate the verifier vetoed (`[clips] keep_vetoed`): its log line says so.
    with config.state_path("events.jsonl").open("a") as log:
        log.write(json.dumps({"type": "event_vetoed", "clip": names[1], "vetoed": True, "verify_score": 0.003}) + "\n")
    out = tmp_path / "desk" / "hall"

    first = pull(target, out)
    assert first.ok, first.detail
    assert first.detail.startswith("2 clip(s) (1 scream, 1 not a scream) into")
    with (out / "manifest.tsv").open(newline="") as handle:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(handle, delimiter="\t")}
    assert sorted(rows) == sorted(names[:2])
    for name, label, note in ((names[0], "scream", "child fell"), (names[1], "non_scream", "the parrot")):
        row = rows[name]
        local = out / row["path"]
        assert local.read_bytes() == (clips / name).read_bytes()
        assert row["sha1"] == hashlib.sha1(local.read_bytes()).hexdigest()
        assert (row["label"], row["note"], row["source"]) == (label, note, "site:hall")
        day = row["path"].split("/")[2]
        assert row["path"] == f"audio/hall/{day}/{name}" and row["group"] == f"site:hall/{day}"
        assert row["sample_rate"] == "16000" and float(row["duration_s"]) > 1.0
    assert (rows[names[0]]["category"], rows[names[1]]["category"]) == ("site_scream", "site_vetoed_non_scream")
    labels = store.load()
    assert labels[names[0]].exported and labels[names[1]].exported and not labels[names[2]].exported
    assert store.protected() == set()  # retention may delete the fetched clips again

    again = pull(target, out)
    assert again.ok and again.detail == "nothing new: 2 labelled clip(s), all fetched before"

    store.set(names[1], "scream", note="it was a scream after all")  # relabelled: fetched again
    third = pull(target, out)
    assert third.ok and third.detail.startswith("1 clip(s) (1 scream, 0 not a scream)")
    with (out / "manifest.tsv").open(newline="") as handle:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(handle, delimiter="\t")}
    assert len(rows) == 2 and rows[names[1]]["label"] == "scream"


def test_the_pulled_folder_is_training_data(tmp_path: Path, clip_store_config: Path, sshd: SshServer) -> None:
    pytest.importorskip("soundfile")
    from train.data import DataError, _read_manifest, load_dataset

    target, clips = site_device(tmp_path, clip_store_config, sshd)
    names = sorted(p.name for p in clips.glob("*.wav"))
    for name, label in zip(names, ("scream", "non_scream", "non_scream"), strict=True):
        LabelStore(clips).set(name, label)
    out = tmp_path / "desk"
    assert pull(target, out).ok
    # train/ reads every row (labels, one group for the one site-day) and probes every file; three
    # clips are too few to train on alone, which is what `scream adapt` mixes corpus replay in for.
    with pytest.raises(DataError) as refused:
        load_dataset(out / "manifest.tsv")
    message = str(refused.value)
    assert "'non_scream' has 2 clips in 1 groups" in message and "'scream' has 1 clips in 1 groups" in message
    clips_read, skipped = _read_manifest(out / "manifest.tsv")
    assert skipped == [] and {c.source for c in clips_read} == {"site:hall"}
    assert all(c.path.exists() and c.group.startswith("site:hall/") for c in clips_read)


def test_an_unreachable_host_writes_nothing(tmp_path: Path, sshd: SshServer) -> None:
    from tests.helpers import free_port

    target = sshd.target(port=free_port(), connect_timeout_s=3)
    outcome = pull(target, tmp_path / "desk")
    assert not outcome.ok and outcome.detail.startswith("list labelled clips: ")
    assert "Connection refused" in outcome.detail
    assert not (tmp_path / "desk").exists()


def test_a_clip_that_changes_in_transit_stays_unfetched(
    tmp_path: Path, clip_store_config: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deploy import remote

    target, clips = site_device(tmp_path, clip_store_config, sshd)
    name = sorted(p.name for p in clips.glob("*.wav"))[0]
    LabelStore(clips).set(name, "non_scream")
    real = remote.Device.output

    def corrupting(self: remote.Device, command: str, **kwargs: object) -> bytes:
        data = real(self, command, **kwargs)  # type: ignore[arg-type]
        if command.startswith("tar "):  # flip one byte of the audio inside the tar stream
            i = data.index(b"data") + 100
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
        return data

    monkeypatch.setattr(remote.Device, "output", corrupting)
    outcome = pull(target, tmp_path / "desk")
    assert not outcome.ok and f"1 failed their sha256 check and stay on the device: {name}" in outcome.detail
    assert not list((tmp_path / "desk").rglob("*.wav"))
    assert name in LabelStore(clips).protected()


def test_the_cli_pulls_and_prints_the_table(
    tmp_path: Path, clip_store_config: Path, sshd: SshServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge.cli import main

    target, clips = site_device(tmp_path, clip_store_config, sshd)
    LabelStore(clips).set(sorted(p.name for p in clips.glob("*.wav"))[0], "scream")
    argv = ["deploy", "pull", target.host, "--out", str(tmp_path / "desk"), "--port", str(sshd.port)]
    argv += ["--identity", target.identity or "", "--known-hosts", target.known_hosts or "", "--root", target.root]
    argv += ["--remote-scream", SCREAM]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "1 clip(s) (1 scream, 0 not a scream)" in out
    assert main(["deploy", "pull", target.host]) == 2
    assert "deploy pull needs --out DIR" in capsys.readouterr().err
