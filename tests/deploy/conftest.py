"""A real OpenSSH server on 127.0.0.1 with throwaway keys, and a device root with a running
`scream listen` that a stand-in systemctl reloads with SIGHUP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deploy.remote import Target
from edge import synth
from edge.audio import write_wav
from edge.classifier import sha256_file
from tests.helpers import export_random_windows, free_port, require_program

ROOT = Path(__file__).resolve().parents[2]
SCREAM = str(Path(sys.executable).with_name("scream"))


@dataclass
class SshServer:
    port: int
    identity: Path
    known_hosts: Path
    user: str

    def target(self, **changes: Any) -> Target:
        """A Target reaching this server with its throwaway key and host key (`changes` on top)."""
        reach = {
            "host": f"{self.user}@127.0.0.1",
            "port": self.port,
            "identity": str(self.identity),
            "known_hosts": str(self.known_hosts),
        }
        return Target(**(reach | changes))


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    sshd_bin = require_program("sshd")
    require_program("ssh")
    require_program("ssh-keygen")
    tmp = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / name)], check=True)
    (tmp / "authorized_keys").write_text((tmp / "user_key.pub").read_text())
    port = free_port()
    config = tmp / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp}/host_key\nPidFile {tmp}/sshd.pid\n"
        f"AuthorizedKeysFile {tmp}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    host_pub = " ".join((tmp / "host_key.pub").read_text().split()[:2])
    known = tmp / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    import getpass

    yield SshServer(port, tmp / "user_key", known, getpass.getuser())
    proc.terminate()
    proc.wait(10)


def _untrained_model(tmp_path_factory: pytest.TempPathFactory, name: str, seed: int) -> Path:
    """A valid int8 model of untrained weights (its own sha256 per seed), exported by train/."""
    pytest.importorskip("tensorflow")
    from train.model import build_model

    model = build_model(window_frames=96, mel_bands=40, feature_mean=-8.0, feature_std=3.0, width=4, seed=seed)
    windows = np.random.default_rng(seed).normal(-8, 3, size=(64, 96, 40)).astype(np.float32)
    out = tmp_path_factory.mktemp(name) / f"{name}.tflite"
    export_random_windows(model, out, windows, thresholds={"on": 0.99, "off": 0.9})
    return out


@pytest.fixture(scope="session")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another valid model than the device's own."""
    return _untrained_model(tmp_path_factory, "second", seed=3)


@pytest.fixture(scope="session")
def third_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A third, for pushes over a device that already has a current and a previous model."""
    return _untrained_model(tmp_path_factory, "third", seed=4)


@dataclass
class FakeDevice:
    root: Path
    target: Target
    service: subprocess.Popen[bytes]
    models: Path

    def current_release(self) -> str:
        return os.readlink(self.models / "current").rsplit("/", 1)[-1]

    def live_sha(self) -> str:
        status = json.loads((self.root / "var/lib/scream-detector/status.json").read_text())
        return str(status["model_sha256"])


def install_release(models: Path, model: Path) -> str:
    release = sha256_file(model)[:12]
    folder = models / "releases" / release
    folder.mkdir(parents=True)
    shutil.copy(model, folder / "model.tflite")
    shutil.copy(model.with_suffix(".json"), folder / "model.json")
    return release


def start_device(tmp_path: Path, sshd: SshServer, model: Path, extra_config: str = "") -> FakeDevice:
    """A device root as the installer leaves it, `model` current, its config with `extra_config`
    appended, and the service running from it."""
    root = tmp_path / "device"
    models = root / "var/lib/scream-detector/models"
    release = install_release(models, model)
    os.symlink(f"releases/{release}", models / "current")
    config = root / "etc/scream-detector/config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        f'[model]\npath = "{models}/current/model.tflite"\nwatch = false\n'
        f'[paths]\nstate_dir = "{root}/var/lib/scream-detector"\n[gpio]\nenabled = false\n' + extra_config
    )
    audio = tmp_path / "room.wav"
    write_wav(audio, synth.room_tone(180.0, 16000, np.random.default_rng(0)), 16000)
    service = subprocess.Popen(
        [SCREAM, "listen", "--config", str(config), "--source", str(audio)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(
        f'#!/bin/sh\n# stand-in for systemctl: "reload scream-detector" sends SIGHUP\n'
        f'[ "$1" = reload ] && kill -HUP {service.pid}\n'
    )
    systemctl.chmod(0o755)
    status = root / "var/lib/scream-detector/status.json"
    deadline = time.monotonic() + 30
    while not status.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    target = sshd.target(root=str(root), remote_scream=SCREAM, systemctl=str(systemctl), confirm_timeout_s=15)
    return FakeDevice(root, target, service, models)


def stop_device(device: FakeDevice) -> None:
    device.service.send_signal(signal.SIGTERM)
    try:
        device.service.wait(10)
    except subprocess.TimeoutExpired:
        device.service.kill()


@pytest.fixture
def device(tmp_path: Path, sshd: SshServer, tiny_model: Path) -> Iterator[FakeDevice]:
    """A device root as the installer leaves it, with the service running from it."""
    started = start_device(tmp_path, sshd, tiny_model)
    yield started
    stop_device(started)


@pytest.fixture(scope="session")
def clip_store_config(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A site's clip store and event log, written by the real `scream listen` (three events)."""
    from tests.helpers import make_clip_store

    return make_clip_store(tmp_path_factory.mktemp("site"), tiny_model)
