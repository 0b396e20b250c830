"""The suite never passes silently without the programs it starts: a missing one fails the test
with its apt line, and only a developer's explicit SCREAM_TESTS_ALLOW_SKIP=1 makes it a skip."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.helpers import require_program, system_packages

ROOT = Path(__file__).resolve().parents[1]


def test_a_missing_program_fails_naming_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCREAM_TESTS_ALLOW_SKIP", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(Path, "is_file", lambda self: False)
    with pytest.raises(pytest.fail.Exception, match=r"sshd is not installed: sudo apt-get install openssh-server"):
        require_program("sshd")
    monkeypatch.setenv("SCREAM_TESTS_ALLOW_SKIP", "1")
    with pytest.raises(pytest.skip.Exception, match="openssh-server"):
        require_program("sshd")


def test_every_program_the_tests_require_is_listed_for_ci() -> None:
    listed = system_packages()
    assert {"mosquitto", "sshd", "ssh", "shellcheck", "systemd-analyze", "dpkg-deb"} <= set(listed)
    calls = re.compile(r'require_program\("([\w-]+)"\)')
    required = {name for path in ROOT.joinpath("tests").rglob("*.py") for name in calls.findall(path.read_text())}
    assert required and required <= set(listed)


def test_the_readme_gives_the_apt_line_for_every_listed_package() -> None:
    readme = (ROOT / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("sudo apt-get install "))
    assert set(system_packages().values()) - {"make"} <= set(line.split("#")[0].split()[3:])


def test_with_ci_true_a_skip_fails_the_run_unless_allowed(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\ndef test_runs():\n    pass\n\ndef test_skips():\n    pytest.skip('no broker here')\n"
    )
    allow = tmp_path / "allow.txt"
    allow.write_text("# none\n")

    def run(ci: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CI": ci, "SCREAM_SKIP_ALLOWLIST": str(allow), "PYTHONPATH": str(ROOT)}
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.skipguard",
            "-p",
            "no:cacheprovider",
            "test_sample.py",
        ]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)

    assert run("").returncode == 0  # a developer's run: a skip is a skip
    failed = run("true")
    assert failed.returncode == 1 and "test_sample.py::test_skips: Skipped: no broker here" in failed.stdout
    allow.write_text("test_sample.py::test_skips  # the sample's reason\n")
    assert run("true").returncode == 0
    allow.write_text("test_sample.py::test_skips\n")
    assert "needs a reason" in run("true").stdout + run("true").stderr


def test_the_checked_in_allow_list_is_short_and_reasoned() -> None:
    from tests.skipguard import allowed_prefixes

    prefixes = allowed_prefixes()
    assert 0 < len(prefixes) <= 3 and all((ROOT / p.split("::")[0]).exists() for p in prefixes)
