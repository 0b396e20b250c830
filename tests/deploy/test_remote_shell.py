"""push, rollback and status step by step against a device that is a folder on this machine.

The same commands `deploy/remote.py` sends over OpenSSH run here through `bash -c` (a Device whose
argv prefix is bash instead of ssh), on a device root with stand-in `scream` and `systemctl`
scripts whose behaviour each test chooses: check-model refusing, the reload failing, the service
keeping its old model or reporting a refused reload. test_push.py does the same against a real sshd
and a real `scream listen`; these run in well under a second each, so `make mutation` can rerun them
for every mutant of deploy/remote.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.remote import DeployError, Device, Outcome, Target, push, rollback, run_many, status, summary_table
from edge.classifier import sha256_file

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "scream-v5.tflite"


class ShellDevice(Device):
    """Runs each device command with bash on this machine instead of through ssh."""

    def _ssh(self) -> list[str]:
        return ["bash", "-c"]


@dataclass
class Bench:
    """A device root (`target.root`), its flags folder and the calls the stand-in systemctl got."""

    target: Target
    models: Path
    flags: Path
    status: Path

    def flag(self, name: str, text: str = "") -> None:
        (self.flags / name).write_text(text)

    def link(self, name: str) -> str:
        path = self.models / name
        return os.readlink(path).rsplit("/", 1)[-1] if path.is_symlink() else ""

    def live(self) -> dict[str, object]:
        return dict(json.loads(self.status.read_text()))

    def reloads(self) -> int:
        log = self.flags / "reloads"
        return len(log.read_text().splitlines()) if log.exists() else 0

    def releases(self) -> set[str]:
        folder = self.models / "releases"
        return {p.name for p in folder.iterdir()} if folder.exists() else set()

    def leftovers(self) -> list[Path]:
        incoming = self.models / ".incoming"
        return [*(incoming.iterdir() if incoming.exists() else []), *self.models.rglob("*.part")]


def make_model(folder: Path, name: str, salt: bytes) -> Path:
    """A model whose bytes (and so sha256) differ by `salt`, with the bundled model's valid sidecar
    (push checks the sidecar locally; the stand-in check-model judges the bytes)."""
    model = folder / f"{name}.tflite"
    model.write_bytes(BUNDLED.read_bytes() + salt)
    shutil.copy(BUNDLED.with_suffix(".json"), model.with_suffix(".json"))
    return model


def install(models: Path, model: Path) -> str:
    release = sha256_file(model)[:12]
    folder = models / "releases" / release
    folder.mkdir(parents=True)
    shutil.copy(model, folder / "model.tflite")
    shutil.copy(model.with_suffix(".json"), folder / "model.json")
    return release


def write_status(path: Path, sha: str, error: str = "", problems: tuple[str, ...] = ()) -> None:
    path.write_text(
        json.dumps({"model_sha256": sha, "last_reload_error": error, "problems": list(problems), "events": 3})
    )


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    root, flags = tmp_path / "device", tmp_path / "flags"
    models = root / "var/lib/scream-detector/models"
    state = root / "var/lib/scream-detector/status.json"
    models.mkdir(parents=True)
    flags.mkdir()
    scream = tmp_path / "scream"
    scream.write_text(
        "#!/bin/sh\n"
        f'case "$1" in\n'
        f"  status) cat {state} ;;\n"
        f'  check-model) if grep -q REFUSE "$2"; then echo "check-model: {{\\"error\\": \\"not a model\\"}}" >&2; '
        "exit 2; fi ;;\n"
        '  *) echo "unknown command $1" >&2; exit 2 ;;\n'
        "esac\n"
    )
    # "reload scream-detector": the service loads whatever models/current holds, unless a flag says
    # the reload fails (systemctl exits 1), the service refuses the file (keeps its old model and
    # says why) or reports the new model beside a refused-reload error.
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(
        "#!/bin/sh\n"
        f'[ "$1 $2" = "reload scream-detector" ] || {{ echo "bad call: $*" >&2; exit 2; }}\n'
        f"echo reload >> {flags}/reloads\n"
        f'[ -e {flags}/reload-fails ] && {{ echo "Job for scream-detector.service failed." >&2; exit 1; }}\n'
        f"[ -e {flags}/reload-keeps-old ] && exit 0\n"
        f'sha=$(sha256sum {models}/current/model.tflite | cut -d" " -f1)\n'
        f'err=""; [ -e {flags}/reload-error ] && err="model refused"\n'
        f'printf \'{{"model_sha256": "%s", "last_reload_error": "%s", "problems": [], "events": 3}}\' '
        f'"$sha" "$err" > {state}\n'
    )
    for script in (scream, systemctl):
        script.chmod(0o755)
    old = make_model(tmp_path, "old", b"old")
    os.symlink(f"releases/{install(models, old)}", models / "current")
    write_status(state, sha256_file(old))
    target = Target(
        host="shell-device", root=str(root), remote_scream=str(scream), systemctl=str(systemctl), confirm_timeout_s=1.5
    )
    return Bench(target, models, flags, state)


def old_sha(bench: Bench) -> str:
    return str(bench.live()["model_sha256"])


def test_a_good_push_goes_live_keeps_the_old_as_previous_and_prunes_the_rest(bench: Bench, tmp_path: Path) -> None:
    before = old_sha(bench)
    stale = install(bench.models, make_model(tmp_path, "stale", b"stale"))
    new = make_model(tmp_path, "new", b"new")
    sha = sha256_file(new)
    outcome = push(bench.target, new, device=ShellDevice(bench.target))
    assert outcome.ok and outcome.detail == "live", outcome.detail
    assert (outcome.sha256, outcome.previous_sha256) == (sha, before[:12])
    assert bench.link("current") == sha[:12] and bench.link("previous") == before[:12]
    assert bench.live()["model_sha256"] == sha and bench.reloads() == 1
    assert (bench.models / "current/model.tflite").read_bytes() == new.read_bytes()
    assert (bench.models / "current/model.json").read_bytes() == new.with_suffix(".json").read_bytes()
    assert bench.releases() == {sha[:12], before[:12]} and stale not in bench.releases()
    assert bench.leftovers() == []
    assert outcome.steps[:4] == [
        "prepare",
        f"upload new.tflite ({new.stat().st_size} bytes)",
        "verify sha256",
        "check-model on the device",
    ]
    assert outcome.steps[4:] == [
        f"switch current: {before[:12]} -> {sha[:12]}",
        "reload service",
        "confirm via scream status",
    ]


def test_pushing_the_running_model_again_keeps_its_release(bench: Bench, tmp_path: Path) -> None:
    before = old_sha(bench)
    again = tmp_path / "again.tflite"
    shutil.copy(bench.models / "current/model.tflite", again)
    shutil.copy(bench.models / "current/model.json", again.with_suffix(".json"))
    outcome = push(bench.target, again, device=ShellDevice(bench.target))
    assert outcome.ok, outcome.detail
    assert bench.link("current") == before[:12] and bench.link("previous") == ""  # not its own previous
    assert outcome.previous_sha256 == "" and bench.releases() == {before[:12]}


def test_a_model_check_model_refuses_changes_nothing_and_leaves_no_files(bench: Bench, tmp_path: Path) -> None:
    before = old_sha(bench)
    bad = make_model(tmp_path, "bad", b"REFUSE")
    outcome = push(bench.target, bad, device=ShellDevice(bench.target))
    assert not outcome.ok
    assert outcome.detail.startswith('check-model: check-model: {"error": "not a model"}'), outcome.detail
    assert bench.link("current") == before[:12] and bench.reloads() == 0 and old_sha(bench) == before
    assert bench.releases() == {before[:12]} and bench.leftovers() == []
    assert outcome.sha256 == sha256_file(bad) and outcome.previous_sha256 == ""


def test_a_failed_reload_puts_both_links_back_reloads_again_and_removes_the_release(
    bench: Bench, tmp_path: Path
) -> None:
    first = old_sha(bench)
    second = make_model(tmp_path, "second", b"second")
    assert push(bench.target, second, device=ShellDevice(bench.target)).ok
    bench.flag("reload-fails")
    third = make_model(tmp_path, "third", b"third")
    outcome = push(bench.target, third, device=ShellDevice(bench.target))
    assert not outcome.ok
    assert outcome.detail == (
        "reload service: Job for scream-detector.service failed.; "
        f"rolled back to {sha256_file(second)[:12]}; "
        "reloading after the rollback failed too: reload service: Job for scream-detector.service failed."
    )
    assert bench.link("current") == sha256_file(second)[:12] and bench.link("previous") == first[:12]
    assert bench.releases() == {first[:12], sha256_file(second)[:12]} and bench.leftovers() == []
    assert bench.reloads() == 1 + 2  # the good push's, the failed one's and the rollback's


def test_a_service_that_keeps_its_old_model_is_rolled_back_and_reloaded_onto_it(bench: Bench, tmp_path: Path) -> None:
    before = old_sha(bench)
    bench.flag("reload-keeps-old")
    new = make_model(tmp_path, "new", b"new")
    outcome = push(bench.target, new, device=ShellDevice(bench.target))
    assert not outcome.ok
    assert outcome.detail == (
        f"confirm: the service still runs model {before[:12]} after 2 s, not {sha256_file(new)[:12]}; "
        f"rolled back to {before[:12]}"
    )
    assert bench.link("current") == before[:12] and bench.link("previous") == ""
    assert bench.releases() == {before[:12]} and bench.leftovers() == [] and bench.reloads() == 2


def test_confirm_refuses_the_new_sha_when_it_comes_with_a_reload_error(bench: Bench, tmp_path: Path) -> None:
    before = old_sha(bench)
    bench.flag("reload-error")
    new = make_model(tmp_path, "new", b"new")
    outcome = push(bench.target, new, device=ShellDevice(bench.target))
    assert not outcome.ok
    assert outcome.detail.startswith(
        f"confirm: the service runs {sha256_file(new)[:12]} but reports a refused reload: model refused"
    ), outcome.detail
    assert bench.link("current") == before[:12] and bench.releases() == {before[:12]}


def test_a_failed_first_push_removes_the_current_link_it_made(bench: Bench, tmp_path: Path) -> None:
    (bench.models / "current").unlink()
    shutil.rmtree(bench.models / "releases")
    bench.flag("reload-fails")
    outcome = push(bench.target, make_model(tmp_path, "new", b"new"), device=ShellDevice(bench.target))
    assert not outcome.ok and "; current model link removed" in outcome.detail, outcome.detail
    assert not (bench.models / "current").exists() and not (bench.models / "current").is_symlink()
    assert bench.releases() == set() and bench.leftovers() == []


class HalfUpload(ShellDevice):
    """Delivers only the first half of every uploaded file, as a dropped connection would."""

    def upload(self, local: Path, remote: str, *, step: str) -> None:
        data = local.read_bytes()
        self.run(f"cat > '{remote}'", step=step, stdin=data[: len(data) // 2])


def test_an_upload_that_arrives_short_is_refused_before_anything_switches(bench: Bench, tmp_path: Path) -> None:
    before = old_sha(bench)
    new = make_model(tmp_path, "new", b"new")
    outcome = push(bench.target, new, device=HalfUpload(bench.target))
    half = subprocess.run(["sha256sum"], input=new.read_bytes()[: new.stat().st_size // 2], capture_output=True)
    assert outcome.detail == (
        f"verify sha256: device has {half.stdout.decode()[:12]}, expected {sha256_file(new)[:12]} "
        "(upload incomplete or corrupted)"
    )
    assert not outcome.ok and bench.link("current") == before[:12] and bench.reloads() == 0
    assert bench.leftovers() == [] and bench.releases() == {before[:12]}


def test_a_broken_local_sidecar_is_refused_before_the_device_is_touched(bench: Bench, tmp_path: Path) -> None:
    new = make_model(tmp_path, "new", b"new")
    new.with_suffix(".json").write_text("{")
    outcome = push(bench.target, new, device=ShellDevice(bench.target))
    assert not outcome.ok and outcome.steps == []
    assert outcome.detail.endswith(
        "is not valid JSON: Expecting property name enclosed in double quotes: line 1 "
        "column 2 (char 1); nothing on the device was changed"
    )


def test_rollback_swaps_current_and_previous_and_confirms(bench: Bench, tmp_path: Path) -> None:
    first = old_sha(bench)
    new = make_model(tmp_path, "new", b"new")
    assert push(bench.target, new, device=ShellDevice(bench.target)).ok
    back = rollback(bench.target, device=ShellDevice(bench.target))
    assert back.ok and back.detail == "live", back.detail
    assert (back.sha256, back.previous_sha256) == (first, sha256_file(new)[:12])
    assert bench.link("current") == first[:12] and bench.link("previous") == sha256_file(new)[:12]
    assert old_sha(bench) == first


def test_rollback_without_a_previous_or_onto_the_current_one_says_so(bench: Bench) -> None:
    alone = rollback(bench.target, device=ShellDevice(bench.target))
    assert not alone.ok and alone.detail == "rollback: nothing to roll back to (no previous model on this device)"
    os.symlink(f"releases/{bench.link('current')}", bench.models / "previous")
    same = rollback(bench.target, device=ShellDevice(bench.target))
    assert same.detail == (
        "rollback: nothing to roll back to (no previous model on this device, or it is the current one, "
        f"{bench.link('current')})"
    )
    assert bench.reloads() == 0


def test_status_reports_health_and_the_services_problems(bench: Bench, tmp_path: Path) -> None:
    healthy = status(bench.target, device=ShellDevice(bench.target))
    assert healthy.ok and healthy.detail == "healthy, 3 events, up 0 s" and healthy.sha256 == old_sha(bench)
    write_status(bench.status, old_sha(bench), problems=("no audio for 30 s", "disk full"))
    sick = status(bench.target, device=ShellDevice(bench.target))
    assert not sick.ok and sick.detail == "no audio for 30 s; disk full"
    bench.status.write_text("not json")
    garbled = status(bench.target, device=ShellDevice(bench.target))
    assert not garbled.ok and garbled.detail == "status: 'scream status' gave no JSON ('not json')"


def test_a_failing_command_is_named_with_its_last_error_line_and_a_timeout_with_its_limit(bench: Bench) -> None:
    device = ShellDevice(bench.target)
    with pytest.raises(DeployError, match=r"^probe: second line$"):
        device.run("echo first >&2; echo second line >&2; exit 3", step="probe")
    with pytest.raises(DeployError, match=r"^probe: exit status 4$"):
        device.run("exit 4", step="probe")
    with pytest.raises(DeployError, match=r"^probe: Host key verification failed\. \(the device's host key is"):
        device.run("echo 'Host key verification failed.' >&2; exit 255", step="probe")
    with pytest.raises(DeployError, match=r"^probe: timed out after 1 s$"):
        device.run("sleep 5", step="probe", timeout_s=0.6)
    assert device.output("printf 'a\\0b'", step="probe") == b"a\0b"
    assert device.run("cat", step="probe", stdin=b"piped") == "piped"


def test_ssh_is_called_strictly_and_only_with_keys() -> None:
    bare = Device(Target(host="pi@hall.local"))._ssh()
    assert bare == [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "LogLevel=ERROR",
        "pi@hall.local",
    ]
    full = Device(
        Target(host="pi@hall.local", port=2222, identity="/k/id", known_hosts="/k/known", connect_timeout_s=3)
    )._ssh()
    assert full == [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "ConnectTimeout=3",
        "-o",
        "LogLevel=ERROR",
        "-p",
        "2222",
        "-i",
        "/k/id",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "UserKnownHostsFile=/k/known",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "pi@hall.local",
    ]


def test_device_paths_follow_the_root() -> None:
    assert Target(host="h").models == "/var/lib/scream-detector/models"
    assert Target(host="h", root="/t").config == "/t/etc/scream-detector/config.toml"
    assert Target(host="h").remote_scream == "/opt/scream-detector/venv/bin/scream"


def test_many_hosts_run_side_by_side_and_the_table_lines_up(bench: Bench) -> None:
    seen: list[str] = []

    def action(target: Target, word: str) -> Outcome:
        seen.append(target.host)
        return Outcome(host=target.host, ok=target.host != "b", sha256="f" * 64, detail=f"{word} {target.host}")

    outcomes = run_many(action, [Target(host=h) for h in ("a", "b", "c")], "hello", parallel=2)
    assert [o.host for o in outcomes] == ["a", "b", "c"] and sorted(seen) == ["a", "b", "c"]
    outcomes[1].seconds = 12.25
    assert summary_table(outcomes).splitlines() == [
        "host  result  model         previous  seconds  detail",
        "a     OK      ffffffffffff            0.0      hello a",
        "b     FAILED  ffffffffffff            12.2     hello b",
        "c     OK      ffffffffffff            0.0      hello c",
    ]
