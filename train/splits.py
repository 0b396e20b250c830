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
    groups: dict[str, list[Clip]] = collections.defaultdict(list)
    for clip in clips:
        groups[clip.group].append(clip)
    rng = np.random.default_rng(seed)
    out: dict[str, list[Clip]] = {name: [] for name in SPLITS}
    for label in LABELS:
        names = sorted(g for g, members in groups.items() if _majority(members) == label)
        rng.shuffle(names)
        total = sum(len(groups[g]) for g in names)
        targets = np.array(fractions) * total
        filled = np.zeros(3)
        # Test, validation and train each first get one random group, so every split sees every
        # label; the rest go large-first to the split furthest below its share.
        seeded = list(zip(names[:3], (2, 1, 0), strict=True)) if len(names) >= 3 else []
        rest = sorted(names[len(seeded) :], key=lambda g: -len(groups[g]))
        for name, split in seeded + [(g, -1) for g in rest]:
            if split < 0:
                split = int(np.argmax((targets - filled) / np.maximum(targets, 1e-9)))
            filled[split] += len(groups[name])
            out[SPLITS[split]].extend(groups[name])
    for name, members in out.items():
        if not any(c.is_scream for c in members) or all(c.is_scream for c in members):
            raise DataError(f"the {name} split lacks a class; add more groups of each label")
    return out


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
