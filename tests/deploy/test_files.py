"""The checked-in deployment files: systemd units, installer, first-boot files, Ansible playbook."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli import DEFAULT_MODEL_NAME
from tests.helpers import model_with_pairs, pair_entry, require_program

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SCREAM = str(Path(sys.executable).with_name("scream"))


def _unit_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.mark.parametrize(
    "unit, executable",
    [
        ("scream-detector.service", "/opt/scream-detector/venv/bin/scream"),
        ("firstboot/scream-firstboot.service", "/opt/scream-detector/src/deploy/install.sh"),
    ],
)
def test_units_pass_systemd_analyze_verify(unit: str, executable: str, tmp_path: Path) -> None:
    require_program("systemd-analyze")
    # verify also checks that ExecStart exists: point it at an executable that does exist here.
    text = (
        (DEPLOY / unit).read_text().replace(executable, SCREAM if "venv" in executable else str(DEPLOY / "install.sh"))
    )
    copy = tmp_path / Path(unit).name
    copy.write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # no unknown keys, no warnings


def test_service_unit_has_the_hardening_and_lifecycle_we_rely_on() -> None:
    s = _unit_settings(DEPLOY / "scream-detector.service")
    assert s["Type"] == ["notify"] and s["WatchdogSec"] and s["Restart"] == ["on-failure"]
    assert s["User"] == ["scream"] and set(s["SupplementaryGroups"][0].split()) == {"audio", "gpio"}
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["NoNewPrivileges"] == ["yes"] and s["ProtectSystem"] == ["strict"] and s["PrivateTmp"] == ["yes"]
    assert s["ReadWritePaths"] == ["/var/lib/scream-detector"]
    assert "--config /etc/scream-detector/config.toml" in s["ExecStart"][0]


@pytest.mark.parametrize("script", ["install.sh", "firstboot/firstrun.sh"])
def test_shell_scripts_are_shellcheck_clean(script: str) -> None:
    require_program("shellcheck")
    proc = subprocess.run(["shellcheck", str(DEPLOY / script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout


def test_the_installer_bundles_the_edge_default_model() -> None:
    """install.sh installs the model `scream` loads when no --model is given, and it is checked in."""
    names = re.findall(r"^BUNDLED_MODEL=(\S+)", (DEPLOY / "install.sh").read_text(), re.MULTILINE)
    assert names == [Path(DEFAULT_MODEL_NAME).stem]
    root = DEPLOY.parent / "models"
    assert (root / DEFAULT_MODEL_NAME).is_file() and (root / DEFAULT_MODEL_NAME).with_suffix(".json").is_file()


def _fake_source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "models").mkdir(parents=True)
    (src / "deploy").mkdir()
    (src / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    bundled = Path(DEFAULT_MODEL_NAME)
    (src / "models" / bundled.name).write_bytes(b"model bytes")
    (src / "models" / bundled.with_suffix(".json").name).write_text("{}")
    return src


def test_installer_dry_run_prints_every_step_and_changes_nothing(tmp_path: Path) -> None:
    src = _fake_source(tmp_path)
    proc = subprocess.run(
        ["bash", str(DEPLOY / "install.sh"), "--dry-run", "--source", str(src)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for expected in (
        "==> Raspberry Pi OS packages",
        "==> system user scream in groups audio and gpio",
        "==> virtual environment /opt/scream-detector/venv",
        f"pip install --quiet {src}[edge]",
        "==> config in /etc/scream-detector",
        "/var/lib/scream-detector/models/current",
        "install -m 0644",
        "systemctl enable scream-detector.service",
    ):
        assert expected in out, expected
    # Python 3.13 has no lgpio wheel: the venv must then see the system's python3-lgpio.
    if sys.version_info >= (3, 13):
        assert "--system-site-packages" in out
    else:
        assert "pip install --quiet lgpio" in out
    assert "python3-lgpio" in (DEPLOY / "install.sh").read_text()


def test_installer_refuses_a_folder_that_is_not_the_project(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["bash", str(DEPLOY / "install.sh"), "--dry-run", "--source", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "not a scream-detector checkout" in proc.stderr
    proc = subprocess.run(["bash", str(DEPLOY / "install.sh"), "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown option --bogus" in proc.stderr


def test_cloud_init_user_data_is_valid_yaml_that_runs_the_installer() -> None:
    yaml = pytest.importorskip("yaml")
    text = (DEPLOY / "firstboot" / "user-data").read_text()
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    assert "python3-lgpio" in data["packages"]
    assert any("install.sh" in " ".join(cmd) for cmd in data["runcmd"])


def test_ansible_playbook_syntax() -> None:
    playbook_bin = shutil.which("ansible-playbook") or str(Path(sys.executable).with_name("ansible-playbook"))
    if not Path(playbook_bin).exists():
        pytest.skip("ansible-core not installed (dev extra)")
    proc = subprocess.run(
        [playbook_bin, "--syntax-check", "-i", "inventory.example.ini", "site.yml"],
        cwd=DEPLOY / "ansible",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = (DEPLOY / "ansible" / "site.yml").read_text()
    assert "max_fail_percentage: 0" in site and "serial:" in site and "rescue:" in site

    # The second stage reaches a fleet as it reaches one Pi: its files, then the installer's --verifier.
    import jinja2
    import yaml

    tasks = {task["name"]: task for task in yaml.safe_load(site)[0]["tasks"]}
    upload = tasks["Upload the second stage for the installer"]
    assert upload["when"] == "verifier_dir is defined"
    assert upload["loop"] == ["yamnet.tflite", "yamnet_class_map.csv"]
    command = jinja2.Environment().from_string(tasks["Run the installer (safe to repeat)"]["ansible.builtin.command"])
    src = "/opt/scream-detector/src"
    assert upload["ansible.builtin.copy"]["dest"] == "{{ src_dir }}/verifier/{{ item }}"
    assert command.render(src_dir=src).split() == [f"{src}/deploy/install.sh", "--source", src]
    assert command.render(src_dir=src, verifier_dir="yamnet").split() == [
        f"{src}/deploy/install.sh",
        "--source",
        src,
        "--verifier",
        f"{src}/verifier",
    ]


def test_a_fresh_install_runs_with_the_defaults_not_the_example(tmp_path: Path) -> None:
    """The config install.sh writes: the site named after the host, every output on, no schedule
    (the example's 'night' window would silence the buzzer from 22:00), the example kept beside it."""
    import socket

    from edge.config import Config, load_config

    out = tmp_path / "etc"
    proc = subprocess.run(
        ["bash", str(DEPLOY / "install.sh"), "--config-only", str(out)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    config = load_config(out / "config.toml")
    assert config.site.name == socket.gethostname() and config.site.location == ""
    assert config.schedule == [] and config.gpio.enabled and config.clips.enabled
    assert config.model.path == "/var/lib/scream-detector/models/current/model.tflite"
    assert config.paths.state_dir == "/var/lib/scream-detector"
    defaults = Config()
    for section in ("audio", "detector", "gpio", "event_log", "clips", "mqtt", "webhook", "outbox"):
        assert getattr(config, section) == getattr(defaults, section), section
    example = load_config(out / "config.example.toml")
    assert example.site.name == "hallway-pi" and example.schedule  # the reference, unchanged


def _installer_constant(name: str) -> str:
    values = re.findall(rf"^{name}=(\S+)", (DEPLOY / "install.sh").read_text(), re.MULTILINE)
    assert len(values) == 1, name
    return values[0]


def test_the_installer_turns_the_verifier_on_with_the_pair_measured_for_the_bundled_model() -> None:
    """The bundled model's sidecar records the pairs `scream verification --record` chose for it, for
    the YAMNet the installer names (its sha256) and for the head the installer installs; the numbers
    the installer writes for any other YAMNet are those of the Screaming pair's report."""
    import hashlib
    import json

    from edge.classifier import ModelSidecar
    from train.verification import chosen_pair

    root = DEPLOY.parent / "models"
    bundled = Path(DEFAULT_MODEL_NAME).stem
    model_sha = hashlib.sha256((root / DEFAULT_MODEL_NAME).read_bytes()).hexdigest()
    side = ModelSidecar.load(root / f"{bundled}.json")
    yamnet = _installer_constant("VERIFIER_SHA256")
    report = json.loads((root / f"{bundled}-verifier" / "report.json").read_text())
    assert report["model_sha256"] == model_sha and report["verifier"]["sha256"] == yamnet
    assert report["verifier"]["classes"] == ["Screaming"]
    screaming = side.pair_for(yamnet, "", ("Screaming",))
    assert screaming is not None and screaming == chosen_pair(report, f"models/{bundled}-verifier/report.md")
    assert float(_installer_constant("VERIFIER_ON")) == screaming.on_threshold
    assert float(_installer_constant("VERIFIER_THRESHOLD")) == screaming.threshold
    assert int(_installer_constant("VERIFIER_ATTEMPTS")) == screaming.attempts > 1
    # The head: the same YAMNet, the file the installer names, the pair its own report chose.
    head_report = json.loads((root / f"{bundled}-verifier-head" / "report.json").read_text())
    head_name = _installer_constant("VERIFIER_HEAD").strip('"').replace("$BUNDLED_MODEL", bundled)
    head_file = root / head_name
    assert head_report["model_sha256"] == model_sha and head_report["verifier"]["classes"] == []
    assert head_report["verifier"]["head"] == f"models/{head_name}"
    assert head_report["verifier"]["sha256"] == yamnet and json.loads(head_file.read_text())["model_sha256"] == yamnet
    head = side.pair_for(yamnet, hashlib.sha256(head_file.read_bytes()).hexdigest(), ())
    assert head is not None and head == chosen_pair(head_report, f"models/{bundled}-verifier-head/report.md")
    assert len(side.verification) == 2


def _verifier_folder(stand_in_verifier: Path, tmp_path: Path) -> Path:
    """The stand-in second stage under the names of YAMNet's release, as --verifier takes them."""
    folder = tmp_path / "yamnet"
    folder.mkdir()
    shutil.copyfile(stand_in_verifier, folder / "yamnet.tflite")
    shutil.copyfile(stand_in_verifier.with_name("standin_class_map.csv"), folder / "yamnet_class_map.csv")
    return folder


def _check_installed_config(config: Path, folder: Path, model: Path, state: Path) -> subprocess.CompletedProcess[str]:
    """The config the installer wrote, with this machine's paths for YAMNet's folder, the model and
    the state, through `listen --check-config` (which must pass)."""
    text = (
        config.read_text()
        .replace("/opt/scream-detector/yamnet", str(folder))
        .replace("/var/lib/scream-detector/models/current/model.tflite", str(model))
        .replace("/var/lib/scream-detector", str(state))
    )
    config.write_text(text)
    check = subprocess.run(
        [SCREAM, "listen", "--config", str(config), "--check-config"], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stderr
    return check


def test_a_fresh_install_with_a_verifier_configures_it_and_its_config_passes_the_check(
    tiny_model: Path, stand_in_verifier: Path, tmp_path: Path
) -> None:
    from edge.config import load_config

    folder = _verifier_folder(stand_in_verifier, tmp_path)
    out = tmp_path / "etc"
    proc = subprocess.run(
        ["bash", str(DEPLOY / "install.sh"), "--config-only", str(out), "--verifier", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    # Not the YAMNet the head was fitted on and the bundled model's pairs were chosen with: said, not
    # refused, and its Screaming class with that pair's numbers written out (no pair holds for it).
    assert "warning" in proc.stderr and "is not the YAMNet the bundled model's head was fitted on" in proc.stderr
    on, threshold = _installer_constant("VERIFIER_ON"), _installer_constant("VERIFIER_THRESHOLD")
    attempts = int(_installer_constant("VERIFIER_ATTEMPTS"))
    assert f"its Screaming class with on_threshold = {on} and threshold = {threshold} instead" in proc.stderr
    config = load_config(out / "config.toml")
    assert config.verifier.head == ""
    assert config.verifier.model == "/opt/scream-detector/yamnet/yamnet.tflite"
    assert config.verifier.classes == ["Screaming"] and config.verifier.threshold == float(threshold)
    assert config.detector.on_threshold == float(on) and config.verifier.attempts == attempts > 1
    # The same file, with the paths of this machine, is what `listen --check-config` loads.
    check = _check_installed_config(out / "config.toml", folder, tiny_model, tmp_path / "state")
    expected = f"(Screaming; threshold {float(threshold):g}, up to {attempts} verdicts a candidate, from the config)"
    assert f"on {float(on):g}, " in check.stdout and f"verifier {folder / 'yamnet.tflite'} {expected}" in check.stdout


def test_installer_dry_run_with_a_verifier_installs_both_files_and_checks_the_config(
    stand_in_verifier: Path, tmp_path: Path
) -> None:
    src = _fake_source(tmp_path)
    folder = _verifier_folder(stand_in_verifier, tmp_path)
    proc = subprocess.run(
        ["bash", str(DEPLOY / "install.sh"), "--dry-run", "--source", str(src), "--verifier", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    steps = [line for line in lines if line.startswith("==> ")]
    at = steps.index("==> second stage (verifier) in /opt/scream-detector/yamnet")
    assert steps[at - 1].startswith("==> config in") and steps[at + 1].startswith("==> models and state")
    assert (
        f"    $ install -m 0644 {folder}/yamnet.tflite {folder}/yamnet_class_map.csv /opt/scream-detector/yamnet/"
        in lines
    )
    check = steps.index("==> config check, as scream")
    assert steps[check + 1].startswith("==> systemd unit")
    assert (
        "    $ runuser -u scream -- /opt/scream-detector/venv/bin/scream listen"
        " --config /etc/scream-detector/config.toml --check-config" in lines
    )


def test_installer_refuses_a_verifier_folder_without_both_files_before_any_step(
    stand_in_verifier: Path, tmp_path: Path
) -> None:
    src = _fake_source(tmp_path)
    folder = _verifier_folder(stand_in_verifier, tmp_path)
    (folder / "yamnet_class_map.csv").unlink()
    for extra in (["--dry-run", "--source", str(src)], ["--config-only", str(tmp_path / "etc")]):
        proc = subprocess.run(
            ["bash", str(DEPLOY / "install.sh"), *extra, "--verifier", str(folder)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1
        assert f"--verifier {folder} has no readable yamnet_class_map.csv" in proc.stderr
        assert "==>" not in proc.stdout
        assert not (tmp_path / "etc").exists()


def test_with_the_yamnet_its_head_was_fitted_on_the_installer_installs_and_configures_the_head(
    tiny_model: Path, stand_in_verifier: Path, tmp_path: Path
) -> None:
    """The installer of a source whose head was fitted on this very YAMNet (here: the stand-in, the
    installer's constant set to its sha256): the head is installed beside YAMNet, the config names it
    with the head's pair, and `listen --check-config` loads it."""
    import hashlib

    from edge.config import load_config
    from tests.helpers import write_stand_in_head

    src = _fake_source(tmp_path)
    folder = _verifier_folder(stand_in_verifier, tmp_path)
    yamnet_sha = hashlib.sha256((folder / "yamnet.tflite").read_bytes()).hexdigest()
    script = (DEPLOY / "install.sh").read_text()
    real_sha = _installer_constant("VERIFIER_SHA256")
    (src / "deploy" / "install.sh").write_text(script.replace(real_sha, yamnet_sha))
    (src / "deploy" / "config.example.toml").write_text((DEPLOY / "config.example.toml").read_text())
    head_name = f"{Path(DEFAULT_MODEL_NAME).stem}-yamnet-head.json"
    write_stand_in_head(src / "models" / head_name, folder / "yamnet.tflite", [6.0, 0.5, -1.0, 10.0], 3.0)
    installer = ["bash", str(src / "deploy" / "install.sh")]

    out = tmp_path / "etc"
    proc = subprocess.run(
        [*installer, "--config-only", str(out), "--verifier", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    config = load_config(out / "config.toml")
    assert config.verifier.model == "/opt/scream-detector/yamnet/yamnet.tflite"
    assert config.verifier.head == f"/opt/scream-detector/yamnet/{head_name}"
    # The thresholds and attempts are left to the running model's pair for this YAMNet and head.
    assert (config.verifier.threshold, config.verifier.attempts, config.detector.on_threshold) == (0.0, 0, 0.0)
    assert "classes" not in (out / "config.toml").read_text()

    dry = subprocess.run(
        [*installer, "--dry-run", "--verifier", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    assert f"    $ install -m 0644 {src}/models/{head_name} /opt/scream-detector/yamnet/" in dry.stdout.splitlines()

    # Installed as the installer would (the head beside YAMNet), the config runs a model that recorded
    # a pair for this YAMNet and head with that pair, and refuses one that did not.
    shutil.copyfile(src / "models" / head_name, folder / head_name)
    pair = pair_entry(yamnet_sha, head_sha256=hashlib.sha256((folder / head_name).read_bytes()).hexdigest(), classes=[])
    paired = model_with_pairs(tiny_model, tmp_path / "paired", [pair | {"on_threshold": 0.6, "threshold": 0.7}])
    check = _check_installed_config(out / "config.toml", folder, paired, tmp_path / "state")
    expected = f"(head {head_name}; threshold 0.7, up to 3 verdicts a candidate, from the model's pair"
    assert "on 0.6, " in check.stdout and f"verifier {folder / 'yamnet.tflite'} {expected}" in check.stdout
    unpaired = subprocess.run(
        [SCREAM, "check-model", str(tiny_model), "--config", str(out / "config.toml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unpaired.returncode == 2 and "no verification pair" in unpaired.stderr, unpaired.stderr
