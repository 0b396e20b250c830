"""Label audit and duplicate grouping: what the teacher says of each clip decides ambiguous
families, flags named labels it contradicts, and ties copies of one sound into one group."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from train.corpus.recipe import RecipeError, TeacherRules

OVERRIDE_LABELS = ("scream", "non_scream", "exclude")


@dataclass
class Verdict:
    """A clip's label after the audit: `label` is "exclude" for a clip left out."""

    label: str
    category: str
    decided_by: str  # name | teacher | override | name (teacher disagrees) | ...
    review: str = ""  # why a person may want to look at it ("" when nothing is in doubt)
    would: str = ""  # report-only audits: what the audit would have done


def category_for(label: str, category: str, non_scream_category: str) -> str:
    """A clip's category under `label`: a family's non-scream category when it is not a scream."""
    return (non_scream_category or category) if label == "non_scream" else category


def teacher_label(score: float, rules: TeacherRules) -> str:
    if score >= rules.scream_at:
        return "scream"
    if score < rules.non_scream_below:
        return "non_scream"
    return "exclude"


def decide(
    *,
    named: str,
    category: str,
    non_scream_category: str,
    score: float,
    rules: TeacherRules,
    audit: str,
    on_disagreement: str,
    prior: str = "",
) -> Verdict:
    """The audit of one clip. `named` is the recipe's or manifest's label, or "teacher" for an
    ambiguous family whose first guess (a data set's manifest label) is `prior`; `score` is the
    teacher's peak score for the scream class."""
    if named == "teacher":
        said = teacher_label(score, rules)
        if said == "scream":
            why = f"teacher decides: peak {rules.scream_class} {score:.3f} >= {rules.scream_at}"
        elif said == "non_scream":
            why = f"teacher decides: peak {rules.scream_class} {score:.3f} < {rules.non_scream_below}"
        else:
            why = f"teacher decides: peak {rules.scream_class} {score:.3f} in between (ambiguous, left out)"
        new_category = category_for(said, category, non_scream_category)
        if audit == "report":
            # A report-only audit keeps the first guess and records what it would have done.
            changed = why if said != prior else ""
            return Verdict(prior or "exclude", category, "name (audit reports only)", changed, would=said)
        return Verdict(said, new_category, "teacher", why if said == "exclude" or (prior and said != prior) else "")
    disagrees = (named == "scream" and score < rules.non_scream_below) or (
        named == "non_scream" and score >= rules.scream_at
    )
    if not disagrees:
        return Verdict(named, category, "name")
    why = f"named {named}, teacher's peak {rules.scream_class} {score:.3f}"
    if on_disagreement == "exclude":
        if audit == "report":
            return Verdict(named, category, "name (teacher disagrees)", why, would="exclude")
        return Verdict("exclude", category, "teacher disagrees", why)
    return Verdict(named, category, "name (teacher disagrees)", why)


@dataclass(frozen=True)
class Override:
    label: str
    reason: str


def read_overrides(path: Path | None) -> dict[str, Override]:
    """path -> Override from a checked-in TSV (path, label, reason); '#' lines are comments."""
    if path is None:
        return {}
    if not path.is_file():
        raise RecipeError(f"overrides file {path} not found")
    out: dict[str, Override] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        lines = [ln for ln in handle if ln.strip() and not ln.startswith("#")]
    for number, row in enumerate(csv.DictReader(lines, delimiter="\t"), start=2):
        clip, label, reason = (row.get(k, "") or "" for k in ("path", "label", "reason"))
        if label not in OVERRIDE_LABELS:
            raise RecipeError(f"{path}:{number}: label {label!r} is not one of {', '.join(OVERRIDE_LABELS)}")
        if not reason.strip():
            raise RecipeError(f"{path}:{number}: an override needs a reason")
        out[clip.strip()] = Override(label, reason.strip())
    return out


NearPair = tuple[str, str]  # two clips' paths in DATA, in sorted order


def near_pair(a: str, b: str) -> NearPair:
    return (a, b) if a <= b else (b, a)


def read_near_copies(path: Path | None) -> frozenset[NearPair] | None:
    """The pinned near-copies from a checked-in TSV (path_a, path_b, cosine; '#' lines are comments),
    as `scream corpus build` writes DATA/near-copies.tsv; None without a file named."""
    if path is None:
        return None
    if not path.is_file():
        raise RecipeError(f"near-copies file {path} not found")
    pairs = set()
    with path.open(newline="", encoding="utf-8") as handle:
        lines = [ln for ln in handle if ln.strip() and not ln.startswith("#")]
    for number, row in enumerate(csv.DictReader(lines, delimiter="\t"), start=2):
        a, b = ((row.get(k) or "").strip() for k in ("path_a", "path_b"))
        if not a or not b or a == b:
            raise RecipeError(f"{path}:{number}: a near-copy needs two different paths (columns path_a, path_b)")
        pairs.add(near_pair(a, b))
    return frozenset(pairs)


@dataclass
class DuplicateReport:
    exact_clusters: int = 0
    exact_clips: int = 0
    near_clusters: int = 0
    near_clips: int = 0
    cross_source_clusters: int = 0
    groups_merged: int = 0
    label_conflicts: list[list[int]] = field(default_factory=list)
    near_pairs: list[tuple[str, str, float]] = field(default_factory=list)  # tied: path_a, path_b, cosine
    # With pinned near-copies: pairs within the margin of the threshold that no pin ties (left apart),
    # pins this machine's embeddings put below the margin (tied all the same), and pins naming a clip
    # this build does not hold.
    unpinned_borderline: list[tuple[str, str, float]] = field(default_factory=list)
    pins_below: list[tuple[str, str, float]] = field(default_factory=list)
    pins_unused: int = 0


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _clusters(uf: _UnionFind, n: int) -> list[list[int]]:
    out: dict[int, list[int]] = {}
    for i in range(n):
        out.setdefault(uf.find(i), []).append(i)
    return [members for members in out.values() if len(members) > 1]


def duplicate_groups(
    *,
    sha1s: list[str],
    embeddings: npt.NDArray[np.float32],
    durations_s: list[float],
    groups: list[str],
    sources: list[str],
    labels: list[str],
    rules: TeacherRules,
    paths: list[str] | None = None,
    pinned: frozenset[NearPair] | None = None,
) -> tuple[list[str], DuplicateReport]:
    """Each clip's group after tying exact copies (same sha1) and near-copies (embedding cosine at or
    above the recipe's threshold, lengths within its share) together: every group holding a copy is
    merged into one, named after its smallest member group, so no split can hold a copy on two sides.
    Only copies in different groups count (excerpts of one file already share a group).

    `pinned` (with `paths`, each clip's path): the near-copies a reference build tied, so that the
    groups do not depend on the machine. The teacher's float embeddings differ slightly between
    CPUs, and a pair at the threshold is a copy on one machine and not on another, which deals other
    folds. Then a pin ties its pair whatever its cosine here, a pair at or above threshold + margin
    is tied as before (a new source's copies), and an unpinned pair within the margin stays apart
    and is reported."""
    if pinned is not None and paths is None:
        raise ValueError("pinned near-copies need the clips' paths")
    n = len(sha1s)
    report = DuplicateReport()
    exact, near = _UnionFind(n), _UnionFind(n)
    first: dict[str, int] = {}
    for i, digest in enumerate(sha1s):
        if digest in first:
            if groups[first[digest]] != groups[i]:  # copies inside one group already share it
                exact.union(first[digest], i)
        else:
            first[digest] = i
    durations = np.asarray(durations_s, dtype=np.float64)
    unit = np.asarray(embeddings, dtype=np.float32)
    threshold, margin = rules.near_duplicate_cosine, rules.near_copy_margin if pinned is not None else 0.0
    name = (lambda i: paths[i]) if paths is not None else str
    index = {p: i for i, p in enumerate(paths)} if paths is not None else {}

    def tie(i: int, c: int, cosine: float) -> None:
        near.union(i, c)
        report.near_pairs.append((*near_pair(name(i), name(c)), cosine))

    for start in range(0, n, 1024):  # blocks keep the similarity matrix small
        block = unit[start : start + 1024] @ unit.T
        rows, cols = np.nonzero(block >= threshold - margin)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if c <= i or sha1s[i] == sha1s[c] or groups[i] == groups[c]:
                continue
            cosine = float(block[r, c])
            if pinned is not None and near_pair(name(i), name(c)) in pinned:
                continue  # tied below, with every pin
            longer = max(durations[i], durations[c])
            if abs(durations[i] - durations[c]) > rules.near_duplicate_length * longer:
                continue
            if cosine >= threshold + margin:
                tie(i, c, cosine)
            else:
                report.unpinned_borderline.append((*near_pair(name(i), name(c)), cosine))
    for a, b in sorted(pinned or ()):
        if a not in index or b not in index:
            report.pins_unused += 1
            continue
        i, c = index[a], index[b]
        if sha1s[i] == sha1s[c] or groups[i] == groups[c]:
            continue  # together already
        cosine = float(unit[i] @ unit[c])
        if cosine < threshold - margin:
            report.pins_below.append((a, b, cosine))
        tie(i, c, cosine)
    exact_clusters, near_clusters = _clusters(exact, n), _clusters(near, n)
    report.exact_clusters, report.exact_clips = len(exact_clusters), sum(map(len, exact_clusters))
    report.near_clusters, report.near_clips = len(near_clusters), sum(map(len, near_clusters))
    joined = _UnionFind(n)
    for members in exact_clusters + near_clusters:
        for other in members[1:]:
            joined.union(members[0], other)
    # Groups, not only clips: a copy ties the whole groups of both copies together.
    by_group: dict[str, int] = {}
    for i, group in enumerate(groups):
        if group in by_group:
            joined.union(by_group[group], i)
        else:
            by_group[group] = i
    out = list(groups)
    for members in _clusters(joined, n):
        names = sorted({groups[i] for i in members})
        if len(names) > 1:
            report.groups_merged += len(names) - 1
            for i in members:
                out[i] = names[0]
    for members in exact_clusters + near_clusters:
        if len({sources[i] for i in members}) > 1:
            report.cross_source_clusters += 1
        if len({labels[i] for i in members} - {"exclude"}) > 1:
            report.label_conflicts.append(sorted(members))
    return out, report
