"""push, rollback and status step by step against a device that is a folder on this machine.

The same commands `deploy/remote.py` sends over OpenSSH run here through `bash -c` (a Device whose
argv prefix is bash instead of ssh), on a device root with stand-in `scream` and `systemctl`
scripts whose behaviour each test chooses: check-model refusing, the reload failing, the service
keeping its old model or reporting a refused reload. test_push.py does the same against a real sshd
and a real `scream listen`; these run in well under a second each, so `make mutation` can rerun them
for every mutant of deploy/remote.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.remote import DeployError, Device, Outcome, Target, push, rollback, run_many, status, summary_table
from edge.classifier import sha256_file
from edge.cli import DEFAULT_MODEL_NAME
from tests.deploy.conftest import install_release

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / DEFAULT_MODEL_NAME


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


def copy_of_current(bench: Bench, folder: Path) -> Path:
    """The model the device runs now, as a local file with its sidecar (to push it again)."""
    again = folder / "again.tflite"
    shutil.copy(bench.models / "current/model.tflite", again)
    shutil.copy(bench.models / "current/model.json", again.with_suffix(".json"))
    return again


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
        f'  status) [ "$4" = "{root}/etc/scream-detector/config.toml" ] || {{ echo "wrong config: $4" >&2; exit 2; }}; '
        f"cat {state} ;;\n"
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
        f'[ -e {flags}/minimal-status ] && {{ printf \'{{"model_sha256": "%s"}}\' "$sha" > {state}; exit 0; }}\n'
        f'printf \'{{"model_sha256": "%s", "last_reload_error": "%s", "problems": [], "events": 3}}\' '
        f'"$sha" "$err" > {state}\n'
    )
    for script in (scream, systemctl):
        script.chmod(0o755)
    old = make_model(tmp_path, "old", b"old")
    os.symlink(f"releases/{install_release(models, old)}", models / "current")
    write_status(state, sha256_file(old))
    target = Target(
        host="shell-device",
        root=str(root),
        remote_scream=str(scream),
        systemctl=str(systemctl),
        confirm_timeout_s=0.3,
        confirm_poll_s=0.05,
    )
    return Bench(target, models, flags, state)


def old_sha(bench: Bench) -> str:
    return str(bench.live()["model_sha256"])


def test_a_good_push_goes_live_keeps_the_old_as_previous_and_prunes_the_rest(
    bench: Bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = old_sha(bench)
    stale = {install_release(bench.models, make_model(tmp_path, f"stale{k}", b"stale%d" % k)) for k in range(2)}
    new = make_model(tmp_path, "new", b"new")
    sha = sha256_file(new)
    outcome = push(bench.target, new, device=ShellDevice(bench.target))
    assert outcome.ok and outcome.detail == "live", outcome.detail
    assert (outcome.host, outcome.action) == ("shell-device", "push")
    assert capsys.readouterr().err.splitlines() == [f"[shell-device] {step}" for step in outcome.steps]
    assert (outcome.sha256, outcome.previous_sha256) == (sha, before[:12])
    assert bench.link("current") == sha[:12] and bench.link("previous") == before[:12]
    assert bench.live()["model_sha256"] == sha and bench.reloads() == 1
    assert (bench.models / "current/model.tflite").read_bytes() == new.read_bytes()
    assert (bench.models / "current/model.json").read_bytes() == new.with_suffix(".json").read_bytes()
    assert bench.releases() == {sha[:12], before[:12]} and not stale & bench.releases()
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
    again = copy_of_current(bench, tmp_path)
    outcome = push(bench.target, again, device=ShellDevice(bench.target))
    assert outcome.ok, outcome.detail
    assert bench.link("current") == before[:12] and bench.link("previous") == ""  # not its own previous
    assert outcome.previous_sha256 == "" and bench.releases() == {before[:12]}
    assert sorted(p.name for p in (bench.models / "releases" / before[:12]).iterdir()) == ["model.json", "model.tflite"]


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
        f"confirm: the service still runs model {before[:12]} after 0.3 s, not {sha256_file(new)[:12]}; "
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


def test_a_failed_first_push_removes_the_current_link_it_made(
    bench: Bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (bench.models / "current").unlink()
    shutil.rmtree(bench.models / "releases")
    bench.flag("reload-fails")
    new = make_model(tmp_path, "new", b"new")
    outcome = push(bench.target, new, device=ShellDevice(bench.target))
    failed = "reload service: Job for scream-detector.service failed."
    assert outcome.detail == f"{failed}; current model link removed; reloading after the rollback failed too: {failed}"
    assert f"switch current: none -> {sha256_file(new)[:12]}" in outcome.steps
    assert "[shell-device] rolling back to no model" in capsys.readouterr().err.splitlines()
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


def test_rollback_swaps_current_and_previous_and_confirms(
    bench: Bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = old_sha(bench)
    new = make_model(tmp_path, "new", b"new")
    assert push(bench.target, new, device=ShellDevice(bench.target)).ok
    capsys.readouterr()
    back = rollback(bench.target, device=ShellDevice(bench.target))
    assert back.ok and back.detail == "live", back.detail
    assert capsys.readouterr().err.splitlines() == [
        f"[shell-device] switch current: {sha256_file(new)[:12]} -> {first[:12]}"
    ]
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
    bench.status.write_text("x" * 300)
    long = status(bench.target, device=ShellDevice(bench.target))
    assert long.detail == f"status: 'scream status' gave no JSON ({'x' * 200!r})"  # the first 200 characters


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
        previous = "e" * 64 if target.host == "c" else ""
        return Outcome(
            host=target.host,
            ok=target.host != "b",
            sha256="f" * 64,
            previous_sha256=previous,
            detail=f"{word} {target.host}",
        )

    outcomes = run_many(action, [Target(host=h) for h in ("a", "b", "c")], "hello", parallel=2)
    assert [o.host for o in outcomes] == ["a", "b", "c"] and sorted(seen) == ["a", "b", "c"]
    outcomes[1].seconds = 12.25
    assert summary_table(outcomes).splitlines() == [
        "host  result  model         previous      seconds  detail",
        "a     OK      ffffffffffff                0.0      hello a",
        "b     FAILED  ffffffffffff                12.2     hello b",
        "c     OK      ffffffffffff  eeeeeeeeeeee  0.0      hello c",
    ]


class FailingDevice(ShellDevice):
    """Makes chosen commands fail: the `nth` command matching a regular expression is replaced by
    one that prints "boom" on stderr and exits 1 (or, with `empty`, by one that prints nothing)."""

    def __init__(self, target: Target, *rules: tuple[str, int], empty: bool = False) -> None:
        super().__init__(target)
        self.rules = {re.compile(pattern): nth for pattern, nth in rules}
        self.seen: dict[re.Pattern[str], int] = dict.fromkeys(self.rules, 0)
        self.empty = empty

    def output(self, command: str, *, step: str, stdin: bytes | None = None, timeout_s: float = 120.0) -> bytes:
        for pattern, nth in self.rules.items():
            if pattern.search(command):
                self.seen[pattern] += 1
                if self.seen[pattern] == nth:
                    command = "true" if self.empty else "echo boom >&2; exit 1"
        return super().output(command, step=step, stdin=stdin, timeout_s=timeout_s)


PRUNE = r"^rm -rf (?!.*&&).*/releases/"  # prune and clean-up, not the install's "rm -rf ... && mv"
CLEAN_UP = r"^rm -rf \S+/\.incoming/"

# Where a push can fail, what it says, and (with a previous model and a stale release on the
# device) that the device is left as it was either way: the same current, previous and releases.
PUSH_FAILURES = [
    ("readlink", 1, "read current: boom; nothing on the device was changed"),
    ("readlink", 2, "read previous: boom; nothing on the device was changed"),
    ("^mkdir -p", 1, "prepare: boom; nothing on the device was changed"),
    ("^cat > ", 1, "upload model: boom"),
    ("^cat > ", 2, "upload sidecar: boom"),
    ("^sha256sum", 1, "verify sha256: boom"),
    (r"^mv \S+\.part ", 1, "verify sha256: boom"),
    ("check-model", 1, "check-model: boom"),
    ("&& mv ", 1, "install release: boom"),
    ("ln -sfn", 1, "switch current: boom"),
    ("ln -sfn", 2, "switch previous: boom; rolled back to {old}"),
    ("reload", 1, "reload service: boom; rolled back to {old}"),
    ("status --json", 1, "status: boom; rolled back to {old}"),
    ("^ls -1", 1, "list releases: boom; rolled back to {old}"),
    (PRUNE, 1, "prune releases: boom; rolled back to {old}"),
]


def with_previous_and_stale(bench: Bench, tmp_path: Path) -> tuple[str, str, set[str]]:
    previous = install_release(bench.models, make_model(tmp_path, "older", b"older"))
    os.symlink(f"releases/{previous}", bench.models / "previous")
    install_release(bench.models, make_model(tmp_path, "stale", b"stale"))
    return bench.link("current"), previous, bench.releases()


@pytest.mark.parametrize(("pattern", "nth", "detail"), PUSH_FAILURES)
def test_a_push_failing_at_any_step_names_it_and_leaves_the_device_as_it_was(
    bench: Bench, tmp_path: Path, capsys: pytest.CaptureFixture[str], pattern: str, nth: int, detail: str
) -> None:
    current, previous, releases = with_previous_and_stale(bench, tmp_path)
    running = old_sha(bench)
    outcome = push(
        bench.target, make_model(tmp_path, "new", b"new"), device=FailingDevice(bench.target, (pattern, nth))
    )
    assert not outcome.ok and (outcome.host, outcome.action) == ("shell-device", "push")
    assert outcome.detail == detail.format(old=current)
    assert (bench.link("current"), bench.link("previous")) == (current, previous)
    assert bench.releases() == releases and bench.leftovers() == []
    assert old_sha(bench) == running  # the service runs the old model (reloaded onto it if it had switched)
    assert 0 <= outcome.seconds < 60 and outcome.seconds == round(outcome.seconds, 2)
    progress = capsys.readouterr().err.splitlines()
    assert f"[shell-device] FAILED: {outcome.detail.split('; ')[0]}" in progress
    assert (f"[shell-device] rolling back to {current}" in progress) == ("rolled back" in detail)


def test_when_the_rollback_itself_fails_the_push_says_so(bench: Bench, tmp_path: Path) -> None:
    with_previous_and_stale(bench, tmp_path)
    device = FailingDevice(bench.target, ("reload", 1), ("ln -sfn", 3))
    outcome = push(bench.target, make_model(tmp_path, "new", b"new"), device=device)
    assert outcome.detail == "reload service: boom; rollback failed too: switch current: boom"
    restore_previous = FailingDevice(bench.target, ("reload", 1), ("ln -sfn", 4))
    again = push(bench.target, make_model(tmp_path, "newer", b"newer"), device=restore_previous)
    assert again.detail == "reload service: boom; rollback failed too: switch previous: boom"


def test_a_first_push_whose_link_removal_fails_says_so(bench: Bench, tmp_path: Path) -> None:
    (bench.models / "current").unlink()
    device = FailingDevice(bench.target, ("reload", 1), ("^rm -f ", 1))
    outcome = push(bench.target, make_model(tmp_path, "new", b"new"), device=device)
    assert outcome.detail == "reload service: boom; rollback failed too: remove current: boom"


def test_a_failed_clean_up_is_reported_after_the_rollback(bench: Bench, tmp_path: Path) -> None:
    current = bench.link("current")
    device = FailingDevice(bench.target, ("reload", 1), (CLEAN_UP, 1))
    outcome = push(bench.target, make_model(tmp_path, "new", b"new"), device=device)
    assert outcome.detail == f"reload service: boom; rolled back to {current}; clean up: boom"
    assert bench.link("current") == current


def test_a_failed_push_of_the_running_model_keeps_its_release(bench: Bench, tmp_path: Path) -> None:
    current = bench.link("current")
    again = copy_of_current(bench, tmp_path)
    bench.flag("reload-fails")
    outcome = push(bench.target, again, device=ShellDevice(bench.target))
    assert not outcome.ok and bench.link("current") == current
    assert bench.releases() == {current}  # the release it runs is not "the failed release"
    assert (bench.models / "current/model.tflite").read_bytes() == again.read_bytes()


def test_an_empty_sha256sum_answer_is_reported_as_nothing(bench: Bench, tmp_path: Path) -> None:
    new = make_model(tmp_path, "new", b"new")
    outcome = push(bench.target, new, device=FailingDevice(bench.target, ("^sha256sum", 1), empty=True))
    assert outcome.detail == (
        f"verify sha256: device has nothing, expected {sha256_file(new)[:12]} (upload incomplete or corrupted)"
    )


ROLLBACK_FAILURES = [
    ("readlink", 1, "read current: boom"),
    ("readlink", 2, "read previous: boom"),
    ("ln -sfn", 1, "switch current: boom"),
    ("ln -sfn", 2, "switch previous: boom"),
    ("reload", 1, "reload service: boom"),
    ("^sha256sum", 1, "read sha256: boom"),
    ("status --json", 1, "status: boom"),
]


@pytest.mark.parametrize(("pattern", "nth", "detail"), ROLLBACK_FAILURES)
def test_a_rollback_failing_at_any_step_names_it(
    bench: Bench, tmp_path: Path, pattern: str, nth: int, detail: str
) -> None:
    with_previous_and_stale(bench, tmp_path)
    outcome = rollback(bench.target, device=FailingDevice(bench.target, (pattern, nth)))
    assert (
        not outcome.ok and outcome.detail == detail and (outcome.host, outcome.action) == ("shell-device", "rollback")
    )
    assert 0 <= outcome.seconds < 60 and outcome.seconds == round(outcome.seconds, 2)


def test_status_names_the_previous_model_and_reads_missing_fields_as_zero(bench: Bench, tmp_path: Path) -> None:
    previous = install_release(bench.models, make_model(tmp_path, "older", b"older"))
    os.symlink(str(bench.models / "releases" / previous), bench.models / "previous")  # an absolute link
    bench.status.write_text(json.dumps({"uptime_s": 125.4}))
    outcome = status(bench.target, device=ShellDevice(bench.target))
    assert outcome.ok and (outcome.host, outcome.action) == ("shell-device", "status")
    assert (outcome.sha256, outcome.previous_sha256) == ("", previous)
    assert outcome.detail == "healthy, 0 events, up 125 s"
    failing = status(bench.target, device=FailingDevice(bench.target, ("status --json", 1)))
    assert not failing.ok and failing.detail == "status: boom"


def test_output_is_decoded_leniently_and_a_host_key_hint_needs_ssh_s_own_exit_status(bench: Bench) -> None:
    device = ShellDevice(bench.target)
    assert device.run("printf 'caf\\351'", step="probe") == "caf\ufffd"
    with pytest.raises(DeployError, match=r"^probe: caf\ufffd$"):
        device.run("printf 'caf\\351' >&2; exit 1", step="probe")
    with pytest.raises(DeployError, match=r"^probe: Host key verification failed\.$"):
        device.run("echo 'Host key verification failed.' >&2; exit 1", step="probe")  # not ssh's 255
    with pytest.raises(DeployError, match=r"^probe: Connection refused$"):
        device.run("echo 'Connection refused' >&2; exit 255", step="probe")
    with pytest.raises(DeployError, match=r"^probe: Host key for hall\.local has changed \(the device's host key"):
        device.run("echo 'Host key for hall.local has changed' >&2; exit 255", step="probe")


def test_a_confirm_with_no_time_to_wait_says_the_model_is_unknown(bench: Bench, tmp_path: Path) -> None:
    target = dataclasses.replace(bench.target, confirm_timeout_s=0)
    new = make_model(tmp_path, "new", b"new")
    outcome = push(target, new, device=ShellDevice(target))
    assert outcome.detail.startswith(
        f"confirm: the service still runs model unknown after 0 s, not {sha256_file(new)[:12]}; rolled back"
    ), outcome.detail


def test_run_many_runs_as_many_hosts_at_once_as_asked() -> None:
    lock, running, most = threading.Lock(), [0], [0]

    def action(target: Target) -> Outcome:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return Outcome(host=target.host, ok=True)

    hosts = [Target(host=h) for h in "abc"]
    run_many(action, hosts, parallel=1)
    assert most[0] == 1
    most[0] = 0
    run_many(action, hosts, parallel=0)  # at least one, never a refusal
    assert most[0] == 1
    most[0] = 0
    run_many(action, hosts, parallel=3)
    assert most[0] == 3


def test_the_service_is_asked_with_the_devices_own_config(bench: Bench, tmp_path: Path) -> None:
    assert ShellDevice(bench.target).live_status()["model_sha256"] == old_sha(bench)
    other = dataclasses.replace(bench.target, root=str(tmp_path / "elsewhere"))  # the stand-in wants bench's
    with pytest.raises(DeployError, match=r"^status: 'scream status' gave no JSON \(''\)$"):
        ShellDevice(other).live_status()


def test_a_status_without_the_reload_error_field_confirms(bench: Bench, tmp_path: Path) -> None:
    bench.flag("minimal-status")  # an older `scream status` that does not report last_reload_error
    assert push(bench.target, make_model(tmp_path, "new", b"new"), device=ShellDevice(bench.target)).ok


def test_a_status_without_a_model_is_reported_as_unknown(bench: Bench, tmp_path: Path) -> None:
    bench.flag("reload-keeps-old")
    bench.status.write_text("{}")
    new = make_model(tmp_path, "new", b"new")
    outcome = push(bench.target, new, device=ShellDevice(bench.target))
    assert outcome.detail.startswith(
        f"confirm: the service still runs model unknown after 0.3 s, not {sha256_file(new)[:12]}"
    )


def test_a_push_and_a_rollback_report_their_time_in_hundredths(bench: Bench, tmp_path: Path) -> None:
    new = make_model(tmp_path, "new", b"new")
    started = time.monotonic()
    pushed = push(bench.target, new, device=ShellDevice(bench.target))
    push_took = time.monotonic() - started
    started = time.monotonic()
    back = rollback(bench.target, device=ShellDevice(bench.target))
    back_took = time.monotonic() - started
    for outcome, took in ((pushed, push_took), (back, back_took)):
        assert outcome.ok and isinstance(outcome.seconds, float), outcome
        assert 0 < outcome.seconds <= took + 0.005 and outcome.seconds == round(outcome.seconds, 2)
        assert outcome.seconds > took - 0.05


def test_without_a_device_every_action_goes_over_ssh_to_its_target(tmp_path: Path) -> None:
    """Nothing listens on the port: each action reaches OpenSSH with this target's host and port."""
    from tests.helpers import free_port

    port = free_port()
    target = Target(host="127.0.0.1", port=port, connect_timeout_s=5, known_hosts=str(tmp_path / "known_hosts"))
    model = make_model(tmp_path, "new", b"new")
    for outcome in (push(target, model), rollback(target), status(target)):
        assert not outcome.ok and outcome.host == "127.0.0.1"
        assert f"port {port}: Connection refused" in outcome.detail, outcome.detail
