"""`scream deploy push|rollback|status`: move models to Pis over OpenSSH, safely.

push: upload to a temporary name, verify sha256 on the device, run `scream check-model` there
against the device's config (a model its `[verifier]` has no settings for is refused),
switch the `current` symlink atomically (the old release stays as `previous`), reload the service,
and confirm through `scream status` that the new sha256 is live; on any failure, put the old model
back and say why. Host keys are checked strictly and only keys are used (BatchMode).

Device layout (under --root, "/" on a real Pi):
    /var/lib/scream-detector/models/releases/<sha12>/model.tflite + model.json
    /var/lib/scream-detector/models/current  -> releases/<sha12>
    /var/lib/scream-detector/models/previous -> releases/<older sha12>
"""

from __future__ import annotations

import concurrent.futures
import json
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.classifier import ModelSidecar, sha256_file, sidecar_path
from edge.errors import ScreamError

MODELS_DIR = "/var/lib/scream-detector/models"
CONFIG_PATH = "/etc/scream-detector/config.toml"
REMOTE_SCREAM = "/opt/scream-detector/venv/bin/scream"
SERVICE = "scream-detector"


class DeployError(ScreamError, RuntimeError):
    """A step on a device failed; the message names the step and the reason."""


@dataclass(frozen=True, kw_only=True)
class Target:
    host: str
    port: int | None = None
    identity: str | None = None
    known_hosts: str | None = None
    root: str = ""  # a prefix for every device path (tests use a temporary folder)
    remote_scream: str = REMOTE_SCREAM
    systemctl: str = "sudo systemctl"
    confirm_timeout_s: float = 30.0
    confirm_poll_s: float = 0.5  # how often the confirm step asks the device's status
    connect_timeout_s: int = 10

    @property
    def models(self) -> str:
        return self.root + MODELS_DIR

    @property
    def config(self) -> str:
        return self.root + CONFIG_PATH


@dataclass
class Outcome:
    host: str
    ok: bool = False
    action: str = ""
    sha256: str = ""
    previous_sha256: str = ""
    detail: str = ""
    steps: list[str] = field(default_factory=list)
    seconds: float = 0.0


_print_lock = threading.Lock()


def _progress(host: str, message: str) -> None:
    with _print_lock:
        print(f"[{host}] {message}", file=sys.stderr, flush=True)


class Device:
    """One device reached with the system's OpenSSH client."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def _ssh(self) -> list[str]:
        t = self.target
        args = [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"ConnectTimeout={t.connect_timeout_s}",
            "-o",
            "LogLevel=ERROR",
        ]
        if t.port:
            args += ["-p", str(t.port)]
        if t.identity:
            args += ["-i", t.identity, "-o", "IdentitiesOnly=yes"]
        if t.known_hosts:
            args += ["-o", f"UserKnownHostsFile={t.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
        return [*args, t.host]

    def run(self, command: str, *, step: str, stdin: bytes | None = None, timeout_s: float = 120.0) -> str:
        return self.output(command, step=step, stdin=stdin, timeout_s=timeout_s).decode(errors="replace")

    def output(self, command: str, *, step: str, stdin: bytes | None = None, timeout_s: float = 120.0) -> bytes:
        """The command's standard output as bytes; a failure is a DeployError naming the step."""
        try:
            proc = subprocess.run([*self._ssh(), command], input=stdin, capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise DeployError(f"{step}: timed out after {timeout_s:.0f} s") from exc
        if proc.returncode != 0:
            reason = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
            text = reason[-1] if reason else f"exit status {proc.returncode}"
            if proc.returncode == 255 and "host key" in text.lower():  # ssh's own failure, about host keys
                text += " (the device's host key is unknown or changed: check it and add it to known_hosts)"
            raise DeployError(f"{step}: {text}")
        return proc.stdout

    def upload(self, local: Path, remote: str, *, step: str) -> None:
        self.run(f"cat > {shlex.quote(remote)}", step=step, stdin=local.read_bytes())

    def live_status(self) -> dict[str, Any]:
        t = self.target
        out = self.run(
            f"{shlex.quote(t.remote_scream)} status --json --config {shlex.quote(t.config)} || true", step="status"
        )
        try:
            return dict(json.loads(out))
        except json.JSONDecodeError as exc:
            raise DeployError(f"status: 'scream status' gave no JSON ({out.strip()[:200]!r})") from exc

    def release_of(self, link: str) -> str:
        out = self.run(f"readlink {shlex.quote(self.target.models + '/' + link)} || true", step=f"read {link}")
        return out.strip().rsplit("/", 1)[-1]

    def reload(self) -> None:
        self.run(f"{self.target.systemctl} reload {SERVICE}", step="reload service")

    def point(self, link: str, release: str) -> None:
        """Atomically repoint models/<link> at releases/<release> (symlink, then rename over)."""
        models = shlex.quote(self.target.models)
        self.run(
            f"cd {models} && ln -sfn releases/{shlex.quote(release)} {link}.new && mv -T {link}.new {link}",
            step=f"switch {link}",
        )

    def wait_for_sha(self, sha256: str) -> None:
        deadline = time.monotonic() + self.target.confirm_timeout_s
        live, refused = "", ""
        while time.monotonic() < deadline:
            status = self.live_status()
            live, refused = str(status.get("model_sha256", "")), str(status.get("last_reload_error", ""))
            if live == sha256 and not refused:
                return
            time.sleep(self.target.confirm_poll_s)
        if live == sha256:
            raise DeployError(f"confirm: the service runs {sha256[:12]} but reports a refused reload: {refused}")
        raise DeployError(
            f"confirm: the service still runs model {live[:12] or 'unknown'} after "
            f"{self.target.confirm_timeout_s:g} s, not {sha256[:12]}"
        )


def push(target: Target, model: Path, *, device: Device | None = None) -> Outcome:
    """Deploy one model to one device; on failure the device keeps (or gets back) its old model.
    `device`: how commands reach it (default: OpenSSH to `target`)."""
    started = time.monotonic()
    outcome = Outcome(host=target.host, action="push")
    device = device or Device(target)
    incoming = ""  # set once the device holds the upload folder (the first change)
    switched = False
    old_release = old_previous = ""

    def step(name: str) -> None:
        outcome.steps.append(name)
        _progress(target.host, name)

    try:
        sidecar = sidecar_path(model)
        ModelSidecar.load(sidecar)  # refuse to ship a model whose own sidecar is broken
        sha = sha256_file(model)
        outcome.sha256 = sha
        release = sha[:12]
        models = target.models
        step("prepare")
        old_release, old_previous = device.release_of("current"), device.release_of("previous")
        device.run(
            f"mkdir -p {shlex.quote(models + '/.incoming/' + release)} {shlex.quote(models + '/releases')}",
            step="prepare",
        )
        incoming = f"{models}/.incoming/{release}"
        step(f"upload {model.name} ({model.stat().st_size} bytes)")
        device.upload(model, f"{incoming}/model.tflite.part", step="upload model")
        device.upload(sidecar, f"{incoming}/model.json", step="upload sidecar")
        step("verify sha256")
        out = device.run(f"sha256sum {shlex.quote(incoming + '/model.tflite.part')}", step="verify sha256")
        remote_sha = out.split()[0] if out.split() else ""
        if remote_sha != sha:
            raise DeployError(
                f"verify sha256: device has {remote_sha[:12] or 'nothing'}, expected {sha[:12]} "
                "(upload incomplete or corrupted)"
            )
        device.run(
            f"mv {shlex.quote(incoming + '/model.tflite.part')} {shlex.quote(incoming + '/model.tflite')}",
            step="verify sha256",
        )
        step("check-model on the device")
        check = f"{shlex.quote(target.remote_scream)} check-model {shlex.quote(incoming + '/model.tflite')}"
        config = shlex.quote(target.config)
        # With the device's config, a model its [verifier] cannot run (no verification pair for that
        # verifier while the config takes the model's) is refused here, before anything is switched.
        device.run(f"if [ -e {config} ]; then {check} --config {config}; else {check}; fi", step="check-model")
        step(f"switch current: {old_release or 'none'} -> {release}")
        device.run(
            f"rm -rf {shlex.quote(models + '/releases/' + release)} && "
            f"mv {shlex.quote(incoming)} {shlex.quote(models + '/releases/' + release)}",
            step="install release",
        )
        device.point("current", release)
        switched = True
        if old_release and old_release != release:
            device.point("previous", old_release)
            outcome.previous_sha256 = old_release
        step("reload service")
        device.reload()
        step("confirm via scream status")
        device.wait_for_sha(sha)
        _prune(device, keep={release, old_release})
        outcome.ok = True
        outcome.detail = "live"
    except (DeployError, ScreamError, OSError) as exc:
        outcome.detail = str(exc)
        _progress(target.host, f"FAILED: {exc}")
        _undo(
            device,
            target,
            incoming=incoming,
            release=outcome.sha256[:12] if outcome.sha256[:12] not in (old_release, old_previous) else "",
            old=(old_release, old_previous) if switched else None,
            outcome=outcome,
        )
    outcome.seconds = round(time.monotonic() - started, 2)
    return outcome


def _undo(
    device: Device,
    target: Target,
    *,
    incoming: str,
    release: str,
    old: tuple[str, str] | None,
    outcome: Outcome,
) -> None:
    """Leave the device as it was before the push: `current` and `previous` where they pointed
    (`old`, when the push had switched them), the service reloaded onto the old model, and the
    upload folder and the failed release removed. Says what was put back, or that nothing changed."""
    if not incoming:
        outcome.detail += "; nothing on the device was changed"
        return
    if old is not None:
        old_current, old_previous = old
        _progress(target.host, f"rolling back to {old_current or 'no model'}")
        try:
            _restore(device, "current", old_current)
            _restore(device, "previous", old_previous)
        except DeployError as exc:
            outcome.detail += f"; rollback failed too: {exc}"
            return
        outcome.detail += f"; rolled back to {old_current}" if old_current else "; current model link removed"
        try:
            device.reload()
        except DeployError as exc:  # the links are back; the service may still hold the new model
            outcome.detail += f"; reloading after the rollback failed too: {exc}"
    try:
        doomed = [incoming] + ([f"{target.models}/releases/{release}"] if release else [])
        device.run("rm -rf " + " ".join(shlex.quote(p) for p in doomed), step="clean up")
    except DeployError as exc:
        outcome.detail += f"; {exc}"


def _restore(device: Device, link: str, release: str) -> None:
    """Point models/<link> at `release` again, or remove it if there was none."""
    if release:
        device.point(link, release)
    else:
        device.run(f"rm -f {shlex.quote(device.target.models + '/' + link)}", step=f"remove {link}")


def _prune(device: Device, keep: set[str]) -> None:
    releases = device.target.models + "/releases"
    names = device.run(f"ls -1 {shlex.quote(releases)}", step="list releases").split()
    stale = [n for n in names if n and n not in keep]
    if stale:
        device.run("rm -rf " + " ".join(shlex.quote(f"{releases}/{n}") for n in stale), step="prune releases")


def rollback(target: Target, *, device: Device | None = None) -> Outcome:
    """Make the previous model current again and confirm the service runs it."""
    started = time.monotonic()
    outcome = Outcome(host=target.host, action="rollback")
    device = device or Device(target)
    try:
        current, previous = device.release_of("current"), device.release_of("previous")
        if not previous or previous == current:
            raise DeployError(
                "rollback: nothing to roll back to (no previous model on this device"
                + (f", or it is the current one, {current})" if previous else ")")
            )
        _progress(target.host, f"switch current: {current} -> {previous}")
        device.point("current", previous)
        if current:
            device.point("previous", current)
        device.reload()
        sha = device.run(f"sha256sum {shlex.quote(target.models + '/current/model.tflite')}", step="read sha256")
        outcome.sha256 = sha.split()[0]
        outcome.previous_sha256 = current
        device.wait_for_sha(outcome.sha256)
        outcome.ok, outcome.detail = True, "live"
    except DeployError as exc:
        outcome.detail = str(exc)
    outcome.seconds = round(time.monotonic() - started, 2)
    return outcome


def status(target: Target, *, device: Device | None = None) -> Outcome:
    """The live model, the previous one and the service's own problems."""
    outcome = Outcome(host=target.host, action="status")
    device = device or Device(target)
    try:
        live = device.live_status()
        outcome.sha256 = str(live.get("model_sha256", ""))
        outcome.previous_sha256 = device.release_of("previous")
        problems = live.get("problems", [])
        outcome.ok = not problems
        outcome.detail = (
            "; ".join(problems) or f"healthy, {live.get('events', 0)} events, up {live.get('uptime_s', 0):.0f} s"
        )
    except DeployError as exc:
        outcome.detail = str(exc)
    return outcome


def run_many(action: Any, targets: list[Target], *args: Any, parallel: int = 4) -> list[Outcome]:
    """Run an action on several devices at once; one bad host never stops the others."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(lambda t: action(t, *args), targets))


def summary_table(outcomes: list[Outcome]) -> str:
    rows = [("host", "result", "model", "previous", "seconds", "detail")]
    for o in outcomes:
        rows.append(
            (o.host, "OK" if o.ok else "FAILED", o.sha256[:12], o.previous_sha256[:12], f"{o.seconds:.1f}", o.detail)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5] for r in rows)
