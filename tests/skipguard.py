"""No silent skips in CI: with CI=true, a skipped test fails the run unless tests/skip-allowlist.txt
names it (a node id prefix and the reason it may skip there). Loaded by tests/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ALLOWLIST = Path(__file__).with_name("skip-allowlist.txt")
_skipped: list[tuple[str, str]] = []


def allowed_prefixes(path: Path = ALLOWLIST) -> list[str]:
    """Node id prefixes of the allow-list: each line `PREFIX  # reason`; a line without a reason is an error."""
    prefixes = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        prefix, _, reason = line.partition("#")
        if not reason.strip():
            raise pytest.UsageError(f"{path}:{number}: every allowed skip needs a reason after '#'")
        prefixes.append(prefix.strip())
    return prefixes


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append((report.nodeid, reason))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") != "true" or not _skipped:
        return
    allowed = allowed_prefixes(Path(os.environ.get("SCREAM_SKIP_ALLOWLIST", ALLOWLIST)))
    silent = [(node, why) for node, why in _skipped if not any(node.startswith(p) for p in allowed)]
    if silent:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"CI=true: {len(silent)} test(s) skipped that tests/skip-allowlist.txt does not allow:"]
        lines += [f"  {node}: {why}" for node, why in silent]
        if reporter is not None:
            reporter.write_line("\n".join(lines), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
