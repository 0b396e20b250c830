"""`make mutation`'s summary: mutmut's results per module, survivors judged equivalent set apart.

Reads `mutmut results --all true` (run in the project folder after `mutmut run`) and
tests/mutation-equivalent.txt (a mutant name and, after '#', why it cannot change behaviour). Prints
each module's killed share of the non-equivalent mutants that tests reach, the survivors, and exits
1 when a module is under the target.
"""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

TARGET = 0.90
EQUIVALENT = Path(__file__).with_name("mutation-equivalent.txt")


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
    for line in lines.splitlines():
        if ":" not in line:
            continue
        name, status = (part.strip() for part in line.rsplit(":", 1))
        module = name.split(".x")[0] if ".x" in name else name.rsplit(".", 1)[0]
        if name in judged:
            counts[module]["equivalent"] += 1
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
    for module, names in sorted(survivors.items()):
        print(f"\nsurvivors in {module} ({len(names)}):")
        print("\n".join(f"  {n}" for n in names))
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
