"""Grouped, stratified, seeded train/validation/test splits: no group on two sides."""

from __future__ import annotations

import collections
import csv
from pathlib import Path

import numpy as np

from train.data import LABELS, Clip, DataError

SPLITS = ("train", "validation", "test")


def split_by_group(
    clips: list[Clip], *, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, list[Clip]]:
    """Assign whole groups to splits, per majority label, so each split gets its share of clips."""
    parts = _assign_groups(clips, fractions, seed)
    out = dict(zip(SPLITS, parts, strict=True))
    _require_both_classes(out)
    return out


def group_folds(clips: list[Clip], folds: int, *, seed: int = 0) -> list[list[Clip]]:
    """`folds` parts of about equal size per label, whole groups each: for cross-validation."""
    if folds < 3:
        raise DataError(f"cross-validation needs at least 3 folds (test, validation, train), got {folds}")
    for label in LABELS:
        groups = {c.group for c in clips if c.label == label}
        if len(groups) < folds:
            raise DataError(f"'{label}' has {len(groups)} groups; {folds} folds need at least one group each")
    return _assign_groups(clips, tuple([1.0 / folds] * folds), seed)


def source_folds(clips: list[Clip], folds: int, *, seed: int = 0) -> list[list[Clip]]:
    """`folds` parts of whole groups (sources, after train.data.regroup) with the screams balanced:
    groups holding screams go largest first to the part with the fewest screams so far, then the
    others largest first to the part with the fewest non-screams. Each part gets at least one group
    with screams; ties are broken by a seeded shuffle."""
    if folds < 3:
        raise DataError(f"cross-validation needs at least 3 folds (test, validation, train), got {folds}")
    groups: dict[str, list[Clip]] = collections.defaultdict(list)
    for clip in clips:
        groups[clip.group].append(clip)
    screams = {g: sum(c.is_scream for c in members) for g, members in groups.items()}
    with_screams = [g for g in groups if screams[g]]
    if len(with_screams) < folds:
        raise DataError(f"{len(with_screams)} sources hold screams; {folds} folds need at least one each")
    names = sorted(groups)
    np.random.default_rng(seed).shuffle(names)
    out: list[list[Clip]] = [[] for _ in range(folds)]
    load = np.zeros((folds, 2))  # screams, non-screams per part
    for name in sorted(names, key=lambda g: (-screams[g], -len(groups[g]))):
        column = 0 if screams[name] else 1
        part = int(np.lexsort((load[:, 1 - column], load[:, column]))[0])
        out[part].extend(groups[name])
        load[part] += (screams[name], len(groups[name]) - screams[name])
    return out


def fold_splits(
    clips: list[Clip], folds: int, fold: int, *, seed: int = 0, balance_screams: bool = False
) -> dict[str, list[Clip]]:
    """Fold `fold` as test, the next fold as validation, the rest as train: over `folds` runs every
    group is tested exactly once, by a model that never saw it. `balance_screams`: deal by
    `source_folds` (leave-source-out) instead of `group_folds`."""
    if not 0 <= fold < folds:
        raise DataError(f"fold {fold} is not one of 0..{folds - 1}")
    parts = (source_folds if balance_screams else group_folds)(clips, folds, seed=seed)
    out = {
        "train": [c for k, part in enumerate(parts) if k not in (fold, (fold + 1) % folds) for c in part],
        "validation": parts[(fold + 1) % folds],
        "test": parts[fold],
    }
    _require_both_classes(out)
    return out


def _assign_groups(clips: list[Clip], fractions: tuple[float, ...], seed: int) -> list[list[Clip]]:
    """Whole groups to len(fractions) parts, per majority label, each part near its share of clips."""
    groups: dict[str, list[Clip]] = collections.defaultdict(list)
    for clip in clips:
        groups[clip.group].append(clip)
    rng = np.random.default_rng(seed)
    n = len(fractions)
    out: list[list[Clip]] = [[] for _ in range(n)]
    for label in LABELS:
        names = sorted(g for g, members in groups.items() if _majority(members) == label)
        rng.shuffle(names)
        total = sum(len(groups[g]) for g in names)
        targets = np.array(fractions) * total
        filled = np.zeros(n)
        # Each part first gets one random group (the last part first: for splits, test, validation,
        # then train), so every part sees every label; the rest go large-first to the part furthest
        # below its share.
        seeded = list(zip(names[:n], range(n - 1, -1, -1), strict=True)) if len(names) >= n else []
        rest = sorted(names[len(seeded) :], key=lambda g: -len(groups[g]))
        for name, part in seeded + [(g, -1) for g in rest]:
            if part < 0:
                part = int(np.argmax((targets - filled) / np.maximum(targets, 1e-9)))
            filled[part] += len(groups[name])
            out[part].extend(groups[name])
    return out


def _require_both_classes(splits: dict[str, list[Clip]]) -> None:
    for name, members in splits.items():
        if not any(c.is_scream for c in members) or all(c.is_scream for c in members):
            raise DataError(f"the {name} split lacks a class; add more groups of each label")


def _majority(members: list[Clip]) -> str:
    return collections.Counter(c.label for c in members).most_common(1)[0][0]


def write_splits(splits: dict[str, list[Clip]], path: Path, base: Path) -> None:
    """One row per clip; paths relative to the data set's folder `base`, so the file travels."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["split", "path", "label", "group", "category"])
        for name in SPLITS:
            for clip in splits[name]:
                writer.writerow([name, relative_path(clip.path, base), clip.label, clip.group, clip.category])


def relative_path(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def read_split(path: Path, split: str, base: Path) -> list[Path]:
    """The clips of one split of a splits file, in its order, resolved against `base`."""
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t") if r["split"] == split]
    return [(base / r["path"]).resolve() for r in rows]  # an absolute path stays absolute
