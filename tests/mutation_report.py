"""`make mutation`'s summary: mutmut's results per module, survivors judged equivalent set apart.

Reads `mutmut results --all true` (run in the project folder after `mutmut run`) and
tests/mutation-equivalent.txt (a mutant name and, after '#', why it cannot change behaviour); a
survivor that only changes the letter case of a line of SQL is equivalent by rule. Prints
each module's killed share of the non-equivalent mutants that tests reach, the survivors, and exits
1 when a module is under the target.
"""

from __future__ import annotations

import ast
import collections
import re
import subprocess
import sys
from pathlib import Path

TARGET = 0.90
EQUIVALENT = Path(__file__).with_name("mutation-equivalent.txt")
# SQLite reads keywords and identifiers in any case: a mutant that only changes the letter case of a
# line of SQL (the outbox's statements) cannot change behaviour. Messages and names are not SQL.
SQL_LINE = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE TABLE|PRAGMA|BEGIN|COMMIT|TEXT NOT NULL|INTEGER NOT NULL)\b"
)


def _functions(module: str) -> dict[str, list[str]]:
    """Every function body in mutmut's copy of `module` (mutants/<path>.py), by name, as lines."""
    if module not in _FUNCTIONS:
        path = Path("mutants", *module.split(".")).with_suffix(".py")
        found: dict[str, list[str]] = {}
        if path.is_file():
            source = path.read_text()
            lines = source.splitlines()
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and "__mutmut_" in node.name:
                    found[node.name] = lines[node.lineno : node.end_lineno]  # the body, without the def line
        _FUNCTIONS[module] = found
    return _FUNCTIONS[module]


_FUNCTIONS: dict[str, dict[str, list[str]]] = {}


def only_sql_case(module: str, name: str) -> bool:
    """True when mutant `name` changes one line of its function, a line of SQL, only in letter case."""
    functions = _functions(module)
    mutant = name.removeprefix(module + ".")
    original = functions.get(mutant.rsplit("__mutmut_", 1)[0] + "__mutmut_orig")
    changed = functions.get(mutant)
    if original is None or changed is None or len(original) != len(changed):
        return False
    pairs = [(a, b) for a, b in zip(original, changed, strict=True) if a != b]
    return len(pairs) == 1 and pairs[0][0].lower() == pairs[0][1].lower() and bool(SQL_LINE.search(pairs[0][0]))


def equivalent() -> dict[str, str]:
    out = {}
    for line in EQUIVALENT.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, why = line.partition("#")
            out[name.strip()] = why.strip()
    return out


def main() -> int:
    mutmut = Path(sys.executable).with_name("mutmut")
    lines = subprocess.run([str(mutmut), "results", "--all", "true"], capture_output=True, text=True).stdout
    judged = equivalent()
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    survivors: dict[str, list[str]] = collections.defaultdict(list)
    sql_case = 0
    stale: list[str] = []  # listed as equivalent, yet killed: the list names another mutant now
    for line in lines.splitlines():
        if ":" not in line:
            continue
        name, status = (part.strip() for part in line.rsplit(":", 1))
        module = name.split(".x")[0] if ".x" in name else name.rsplit(".", 1)[0]
        if name in judged and status in ("survived", "suspicious"):
            counts[module]["equivalent"] += 1
            continue
        if name in judged:
            stale.append(f"{name}: {status}")
        if status in ("survived", "suspicious") and only_sql_case(module, name):
            counts[module]["equivalent"] += 1
            sql_case += 1
            continue
        counts[module][status] += 1
        if status in ("survived", "suspicious"):
            survivors[module].append(name)
    if not counts:
        print("mutmut reported no mutants: its run failed (rerun `mutmut run` to see why)")
        return 1
    failing = False
    print(
        f"{'module':<18} {'killed':>7} {'survived':>9} {'timeout':>8} {'equivalent':>11} {'no tests':>9} {'score':>7}"
    )
    for module, c in sorted(counts.items()):
        reached = c["killed"] + c["timeout"] + c["survived"] + c["suspicious"]
        score = (c["killed"] + c["timeout"]) / reached if reached else 1.0
        failing |= score < TARGET
        print(
            f"{module:<18} {c['killed']:>7} {c['survived']:>9} {c['timeout']:>8} {c['equivalent']:>11} "
            f"{c['no tests']:>9} {score:>7.1%}"
        )
    if sql_case:
        print(f"({sql_case} survivors only change the letter case of SQL: counted as equivalent)")
    for module, names in sorted(survivors.items()):
        print(f"\nsurvivors in {module} ({len(names)}):")
        print("\n".join(f"  {n}" for n in names))
    if stale:
        print(f"\nlisted in {EQUIVALENT.name} but not surviving (the numbering moved: update the list):")
        print("\n".join(f"  {n}" for n in stale))
    return 1 if failing or stale else 0


if __name__ == "__main__":
    sys.exit(main())
