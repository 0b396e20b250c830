"""The direction of imports (README "How the code is laid out"), checked on the source itself.

edge/ imports only edge/ (and its own dependencies); deploy/ may use edge/ (its model checks) but not
train/; train/ may use edge/ (the feature contract, the decisions) but not deploy/. Every import
statement counts, also those inside functions and under TYPE_CHECKING, and so do string arguments
of importlib.import_module and __import__.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "train", "deploy")
ALLOWED = {"edge": {"edge"}, "deploy": {"deploy", "edge"}, "train": {"train", "edge"}}


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import of one of PACKAGES in a source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        found += [(node.lineno, name.split(".")[0]) for name in names if name.split(".")[0] in PACKAGES]
    return sorted(found)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_the_documented_way(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no sources under {package}/"
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in files
        for line, target in project_imports(path)
        if target not in ALLOWED[package]
    ]
    assert wrong == [], f"{package}/ may import only {sorted(ALLOWED[package])}"


def test_the_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "import os\nimport train.pipeline\nfrom deploy import remote\nfrom . import sibling\n"
        "def f():\n    from edge.cli import main\n    importlib.import_module('train.cli')\n"
        "    __import__('deploy.cli')\n"
    )
    assert project_imports(source) == [(2, "train"), (3, "deploy"), (6, "edge"), (7, "train"), (8, "deploy")]


def test_the_other_packages_reach_the_scream_command_through_entry_points() -> None:
    """`scream train` and `scream deploy` exist although edge/ imports neither package."""
    import importlib.metadata

    from edge.cli import COMMANDS_GROUP, build_parser

    names = {e.name: e.value for e in importlib.metadata.entry_points(group=COMMANDS_GROUP)}
    assert names == {"train": "train.cli:register", "deploy": "deploy.cli:register"}
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"train", "crossval", "evaluate", "corpus", "deploy"} <= set(commands)
    edge_only = build_parser(plugins=False)._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert not {"train", "crossval", "evaluate", "corpus", "deploy"} & set(edge_only)
