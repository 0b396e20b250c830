from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.remote import Target, push, rollback, run_many, status, summary_table
from edge.classifier import sha256_file
from edge.features import FeatureParams
from tests.deploy.conftest import ROOT, FakeDevice, SshServer, start_device, stop_device
from tests.helpers import model_with_pairs, pair_entry, wait_until


def _no_partial_files(device: FakeDevice) -> None:
    incoming = device.models / ".incoming"
    assert not incoming.exists() or not any(incoming.iterdir())
    assert not list(device.models.rglob("*.part"))


def test_good_model_goes_live_and_rollback_restores(device: FakeDevice, second_model: Path) -> None:
    old_sha = device.live_sha()
    outcome = push(device.target, second_model)
    assert outcome.ok, outcome.detail
    new_sha = sha256_file(second_model)
    assert outcome.sha256 == new_sha and device.live_sha() == new_sha
    assert device.current_release() == new_sha[:12]
    assert os.readlink(device.models / "previous").endswith(old_sha[:12])
    _no_partial_files(device)
    assert status(device.target).sha256 == new_sha

    back = rollback(device.target)
    assert back.ok, back.detail
    assert device.live_sha() == old_sha and device.current_release() == old_sha[:12]
    assert os.readlink(device.models / "previous").endswith(new_sha[:12])


def test_corrupt_model_leaves_old_model_running(device: FakeDevice, tiny_model: Path, tmp_path: Path) -> None:
    old_sha = device.live_sha()
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(tiny_model.read_bytes()[:-500])  # truncated; its sidecar still names the full file's sha256
    shutil.copy(tiny_model.with_suffix(".json"), bad.with_suffix(".json"))
    outcome = push(device.target, bad)
    assert not outcome.ok and "check-model" in outcome.detail and "sha256" in outcome.detail
    assert device.live_sha() == old_sha and device.current_release() == old_sha[:12]
    _no_partial_files(device)


def test_wrong_feature_contract_is_refused(device: FakeDevice, tiny_model: Path, tmp_path: Path) -> None:
    old_sha = device.live_sha()
    other = tmp_path / "other.tflite"
    shutil.copy(tiny_model, other)
    sidecar = json.loads(tiny_model.with_suffix(".json").read_text())
    features = FeatureParams(mel_bands=64)
    sidecar["features"], sidecar["feature_hash"] = features.to_dict(), features.contract_hash
    other.with_suffix(".json").write_text(json.dumps(sidecar))
    outcome = push(device.target, other)
    assert not outcome.ok and "check-model" in outcome.detail and "mel_bands" in outcome.detail
    assert device.live_sha() == old_sha
    _no_partial_files(device)


def test_upload_killed_halfway(
    device: FakeDevice, second_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ssh that dies after 1000 bytes of the model upload, as a dropped Wi-Fi link would."""
    real_ssh = shutil.which("ssh")
    wrapper = tmp_path / "bin" / "ssh"
    wrapper.parent.mkdir()
    wrapper.write_text(
        "#!/bin/bash\n"
        'last="${*: -1}"\n'
        'case "$last" in\n'
        f'  "cat > "*model.tflite.part*) head -c 1000 | {real_ssh} "$@"; exit 255 ;;\n'
        f'  *) exec {real_ssh} "$@" ;;\n'
        "esac\n"
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    old_sha = device.live_sha()
    outcome = push(device.target, second_model)
    assert not outcome.ok and outcome.detail.startswith("upload model")
    assert device.live_sha() == old_sha and device.current_release() == old_sha[:12]
    _no_partial_files(device)


def test_unknown_host_key_is_refused(device: FakeDevice, second_model: Path, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    outcome = push(dataclasses.replace(device.target, known_hosts=str(empty)), second_model)
    assert not outcome.ok and "Host key verification failed" in outcome.detail
    assert device.live_sha() == sha256_file(device.models / "current" / "model.tflite")


def test_several_hosts_one_bad_does_not_stop_the_others(device: FakeDevice, second_model: Path) -> None:
    bad = dataclasses.replace(device.target, host=device.target.host.replace("127.0.0.1", "127.0.0.2"))
    outcomes = run_many(push, [bad, device.target], second_model)
    assert [o.ok for o in outcomes] == [False, True]
    table = summary_table(outcomes)
    assert "FAILED" in table and "OK" in table and "127.0.0.2" in table


def test_cli_deploy_push_and_status(device: FakeDevice, second_model: Path, sshd: SshServer) -> None:
    t = device.target
    common = [
        "--port",
        str(t.port),
        "--identity",
        t.identity or "",
        "--known-hosts",
        t.known_hosts or "",
        "--root",
        t.root,
        "--remote-scream",
        t.remote_scream,
        "--systemctl",
        t.systemctl,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    pushed = subprocess.run(
        [sys.executable, "-m", "edge", "deploy", "push", t.host, "--model", str(second_model), *common, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)[0]["sha256"] == sha256_file(second_model)
    assert "[" + t.host + "] confirm via scream status" in pushed.stderr  # progress lines
    shown = subprocess.run(
        [sys.executable, "-m", "edge", "deploy", "status", t.host, *common],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert shown.returncode == 0 and sha256_file(second_model)[:12] in shown.stdout


def test_a_push_that_fails_to_confirm_leaves_current_and_previous_as_they_were(
    device: FakeDevice, second_model: Path, third_model: Path
) -> None:
    """current -> B, previous -> A; a push of C whose reload never happens fails at its confirm step:
    both links must point where they did (previous must not become B too), C's release is removed,
    and a rollback still reaches A."""
    first_sha = device.live_sha()
    assert push(device.target, second_model).ok
    second_sha = sha256_file(second_model)
    silent = dataclasses.replace(device.target, systemctl="/bin/true", confirm_timeout_s=3)  # no SIGHUP
    failed = push(silent, third_model)
    assert (
        not failed.ok and failed.detail.startswith("confirm:") and f"rolled back to {second_sha[:12]}" in failed.detail
    )
    assert "rollback failed" not in failed.detail
    assert device.current_release() == second_sha[:12]
    assert os.readlink(device.models / "previous") == f"releases/{first_sha[:12]}"
    assert sorted(p.name for p in (device.models / "releases").iterdir()) == sorted([first_sha[:12], second_sha[:12]])
    _no_partial_files(device)
    back = rollback(device.target)
    assert back.ok, back.detail
    assert device.live_sha() == first_sha and os.readlink(device.models / "previous") == f"releases/{second_sha[:12]}"


def test_rollback_with_nothing_to_roll_back_to_fails_saying_so(device: FakeDevice) -> None:
    alone = rollback(device.target)  # a fresh device: no previous model
    assert not alone.ok and "nothing to roll back to" in alone.detail
    os.symlink(os.readlink(device.models / "current"), device.models / "previous")
    same = rollback(device.target)  # previous is the current model
    assert not same.ok and "it is the current one" in same.detail


def test_a_push_that_never_reached_the_device_claims_no_rollback(device: FakeDevice, second_model: Path) -> None:
    from tests.helpers import free_port

    refused = push(dataclasses.replace(device.target, port=free_port()), second_model)
    assert not refused.ok and "Connection refused" in refused.detail
    assert refused.detail.endswith("; nothing on the device was changed") and "rollback" not in refused.detail
    unknown = device.root / "empty_known_hosts"
    unknown.write_text("")
    stranger = push(dataclasses.replace(device.target, known_hosts=str(unknown)), second_model)
    assert "add it to known_hosts" in stranger.detail and "rollback" not in stranger.detail
    assert stranger.detail.endswith("; nothing on the device was changed")


def test_push_requires_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    from edge.cli import main

    assert main(["deploy", "push", "somehost"]) == 2
    assert "needs --model" in capsys.readouterr().err
    target = Target(host="x", root="/tmp/device")
    assert (target.models, target.config) == (
        "/tmp/device/var/lib/scream-detector/models",
        "/tmp/device/etc/scream-detector/config.toml",
    )


def test_a_push_whose_reload_fails_puts_both_links_back_and_removes_the_release(
    device: FakeDevice, second_model: Path, third_model: Path
) -> None:
    first_sha = device.live_sha()
    assert push(device.target, second_model).ok
    second_sha = sha256_file(second_model)
    broken = dataclasses.replace(device.target, systemctl="/bin/false")  # `systemctl reload` fails
    failed = push(broken, third_model)
    assert not failed.ok and failed.detail.startswith("reload service:")
    # The rollback's own reload fails too (the same systemctl), and says so; the links are back anyway.
    assert f"rolled back to {second_sha[:12]}; reloading after the rollback failed too" in failed.detail
    assert device.current_release() == second_sha[:12]
    assert os.readlink(device.models / "previous") == f"releases/{first_sha[:12]}"
    assert sorted(p.name for p in (device.models / "releases").iterdir()) == sorted([first_sha[:12], second_sha[:12]])
    _no_partial_files(device)
    assert device.live_sha() == second_sha  # the service never left the model it ran


def test_confirm_refuses_a_live_sha_that_came_with_a_reload_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The device reports the new sha256 but also a refused reload: not confirmed."""
    from deploy.remote import DeployError, Device

    device = Device(Target(host="nowhere", confirm_timeout_s=1.0))
    reports = iter([{"model_sha256": "a" * 64, "last_reload_error": "sha256 mismatch"}] * 10)
    monkeypatch.setattr(Device, "live_status", lambda self: next(reports))
    with pytest.raises(DeployError, match="confirm: the service runs aaaaaaaaaaaa but reports a refused reload"):
        device.wait_for_sha("a" * 64)
    monkeypatch.setattr(Device, "live_status", lambda self: {"model_sha256": "a" * 64, "last_reload_error": ""})
    device.wait_for_sha("a" * 64)  # the same sha without the error is confirmed


def test_a_device_whose_verifier_takes_the_models_pair_refuses_a_model_without_one(
    tmp_path: Path, sshd: SshServer, tiny_model: Path, second_model: Path, stand_in_verifier: Path
) -> None:
    """The device's [verifier] leaves its threshold to the model: a model that recorded no pair for
    that verifier is refused by check-model on the device before anything is switched, and one that
    did goes live with its own pair."""
    sha = sha256_file(stand_in_verifier)
    first = model_with_pairs(tiny_model, tmp_path / "first", [pair_entry(sha)], name="first")
    device = start_device(tmp_path, sshd, first, f'[verifier]\nmodel = "{stand_in_verifier}"\n')
    status_file = device.root / "var/lib/scream-detector/status.json"

    def verifier_threshold() -> float | None:
        return json.loads(status_file.read_text()).get("verifier", {}).get("threshold")

    try:
        assert wait_until(lambda: verifier_threshold() == 0.33)
        refused = push(device.target, second_model)
        assert not refused.ok and refused.detail.startswith("check-model"), refused.detail
        assert "has no verification pair for this verifier" in refused.detail
        assert "nothing on the device was changed" not in refused.detail  # the upload was cleaned up
        assert device.live_sha() == sha256_file(first) and device.current_release() == sha256_file(first)[:12]
        _no_partial_files(device)

        paired = model_with_pairs(
            second_model, tmp_path / "paired", [pair_entry(sha, on_threshold=0.8, threshold=0.44)], name="paired"
        )
        pushed = push(device.target, paired)
        assert pushed.ok, pushed.detail
        assert device.live_sha() == sha256_file(second_model)
        assert wait_until(lambda: verifier_threshold() == 0.44)
    finally:
        stop_device(device)
