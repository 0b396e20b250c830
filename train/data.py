"""Data sets for training: a manifest (TSV/CSV) or a folder per label, validated before use."""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from edge.audio import AUDIO_SUFFIXES, open_audio
from edge.errors import AudioError, ScreamError
from edge.resample import StreamingResampler

LABELS = ("non_scream", "scream")
MIN_CLIPS_PER_LABEL = 6
MIN_GROUPS_PER_LABEL = 3

# Sounds that usually trip scream detectors, mined from the manifest's finer categories.
HARD_NEGATIVE_FAMILIES: dict[str, tuple[str, ...]] = {
    "infant_cry": ("baby_cry", "cry"),
    "alarm_ringtone": (
        "alarm",
        "siren",
        "car_horn",
        "fire_station",
        "whistle",
        "traffic_horn",
        "urban_car_horn",
        "ringtone",
        "notification",
    ),
    "animal": ("animals", "animals_birds", "dog_bark", "farm_animals", "sfx_animals", "creature"),
    "laughter": ("laugh", "laughter", "laughter_crowd", "giggle"),
    "children_cheering": (
        "children_playing",
        "crowd_cheer",
        "crowd_cheering",
        "crowd_sports",
        "crowd_party",
        "crowd_applause",
        "applause_crowd",
    ),
    "vocal_effort": ("vocal_effort", "vocal_other", "gasp", "moan", "singing", "sigh", "yawn", "speech_taunt", "shout"),
}


class DataError(ScreamError, ValueError):
    """A data set that cannot be trained on; the message says why."""


def negative_family(category: str) -> str:
    for family, categories in HARD_NEGATIVE_FAMILIES.items():
        if category in categories:
            return family
    return "other"


@dataclass
class Clip:
    path: Path
    label: str
    group: str
    category: str = ""
    source: str = ""
    licence: str = ""
    sample_rate_hz: int = 0
    duration_s: float = 0.0
    teacher_scream: float | None = None  # the corpus builder's audit: the teacher's peak "Screaming"

    @property
    def is_scream(self) -> bool:
        return self.label == "scream"

    @property
    def family(self) -> str:
        return "scream" if self.is_scream else negative_family(self.category)


@dataclass
class Dataset:
    root: Path
    clips: list[Clip]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def base(self) -> Path:
        """The folder clip paths are relative to: the data folder, or the manifest's folder."""
        return self.root if self.root.is_dir() else self.root.parent

    def by_label(self, label: str) -> list[Clip]:
        return [c for c in self.clips if c.label == label]

    def summary_lines(self) -> list[str]:
        lines = [f"data set {self.root}: {len(self.clips)} usable clips, {len(self.skipped)} skipped"]
        for label in LABELS:
            clips = self.by_label(label)
            minutes = sum(c.duration_s for c in clips) / 60
            groups = len({c.group for c in clips})
            lines.append(f"  {label:<11} {len(clips):>6} clips  {minutes:8.1f} min  {groups:>5} groups")
        rates = collections.Counter(c.sample_rate_hz for c in self.clips)
        lines.append("  sample rates: " + ", ".join(f"{r} Hz x{n}" for r, n in sorted(rates.items())))
        families = collections.Counter(c.family for c in self.clips if not c.is_scream)
        lines.append("  negatives by family: " + ", ".join(f"{k} {v}" for k, v in sorted(families.items())))
        for path, reason in self.skipped:
            lines.append(f"  skipped {path}: {reason}")
        return lines


def _read_manifest(manifest: Path) -> tuple[list[Clip], list[tuple[str, str]]]:
    delimiter = "\t" if manifest.suffix.lower() in (".tsv", ".tab") else ","
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        columns = set(reader.fieldnames or [])
        missing = {"path", "label"} - columns
        if missing:
            raise DataError(
                f"manifest {manifest} lacks the column(s) {', '.join(sorted(missing))} "
                f"(has: {', '.join(sorted(columns)) or 'none'})"
            )
        rows = list(reader)
    clips, skipped, seen = [], [], set()
    for number, row in enumerate(rows, start=2):
        rel = (row.get("path") or "").strip()
        label = (row.get("label") or "").strip()
        if not rel:
            skipped.append((f"{manifest.name}:{number}", "empty path"))
            continue
        path = (manifest.parent / rel).resolve()
        if label not in LABELS:
            skipped.append((rel, f"unknown label {label!r} (expected one of {', '.join(LABELS)})"))
            continue
        if path in seen:
            skipped.append((rel, "duplicate path (first row kept)"))
            continue
        seen.add(path)
        clips.append(
            Clip(
                path=path,
                label=label,
                group=(row.get("group") or "").strip() or rel,
                category=(row.get("category") or "").strip(),
                source=(row.get("source") or "").strip(),
                licence=(row.get("licence") or "").strip(),
                teacher_scream=_optional_float(row.get("teacher_scream")),
            )
        )
    return clips, skipped


def _optional_float(text: str | None) -> float | None:
    try:
        return float(text) if text and text.strip() else None
    except ValueError:
        return None


def _read_folders(root: Path) -> tuple[list[Clip], list[tuple[str, str]]]:
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir())
    unknown = [d for d in subdirs if d not in LABELS]
    if not any(d in LABELS for d in subdirs):
        raise DataError(
            f"{root} is neither a manifest nor a folder with {' and '.join(f'{x}/' for x in LABELS)} subfolders"
        )
    clips, skipped = [], [(f"{d}/", "unknown label folder (ignored)") for d in unknown]
    for label in LABELS:
        folder = root / label
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES:
                rel = path.relative_to(root)
                clips.append(Clip(path=path.resolve(), label=label, group=str(rel.with_suffix("")), category=label))
    return clips, skipped


def load_dataset(data: str | os.PathLike[str], *, probe: bool = True) -> Dataset:
    """Read a manifest or label folders, probe every file's header, and refuse unusable data."""
    root = Path(data)
    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    if root.is_dir():
        manifests = [root / n for n in ("manifest.tsv", "manifest.csv") if (root / n).exists()]
        clips, skipped = _read_manifest(manifests[0]) if manifests else _read_folders(root)
    else:
        clips, skipped = _read_manifest(root)
    usable = []
    for clip in clips:
        if probe:
            try:
                audio = open_audio(clip.path)
            except (AudioError, ImportError) as exc:
                skipped.append((str(clip.path), str(exc).replace(f"{clip.path}: ", "")))
                continue
            clip.sample_rate_hz, clip.duration_s = audio.sample_rate_hz, audio.duration_s
        usable.append(clip)
    dataset = Dataset(root=root, clips=usable, skipped=skipped)
    check_trainable(dataset)
    return dataset


SPLIT_UNITS = ("group", "source")


def source_units(clips: list[Clip]) -> dict[str, str]:
    """Each recording group's unit for splitting by source: the source it came from, or, for a
    recording that several sources ship (the corpus builder's audit gives its copies one group),
    the source holding most of its copies (ties: the first by name). So no recording is on two
    sides of a split, and one shared recording does not weld two sources into one unit: on
    corpus-v2, six such recordings joined eight sources, 111 of its 264 screams, into one unit,
    and the fold that tested it trained on 26 screams."""
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for clip in clips:
        counts[clip.group][clip.source] += 1
    return {group: min(sources, key=lambda s: (-sources[s], s)) for group, sources in counts.items()}


def regroup(dataset: Dataset, split_by: str) -> Dataset:
    """The data set with `group` replaced by the unit splits deal whole: "group" (recording groups,
    as given) or "source" (every clip of a source on one side, for judging on unheard sources;
    a recording several sources ship goes with the one holding most of its copies, `source_units`)."""
    if split_by not in SPLIT_UNITS:
        raise DataError(f"split_by must be one of {', '.join(SPLIT_UNITS)}, got {split_by!r}")
    if split_by == "group":
        return dataset
    missing = [c for c in dataset.clips if not c.source]
    if missing:
        raise DataError(
            f"splitting by source needs a 'source' column: {len(missing)} clips have none, e.g. {missing[0].path}"
        )
    unit = source_units(dataset.clips)
    clips = [dataclasses.replace(c, group=f"source:{unit[c.group]}") for c in dataset.clips]
    regrouped = Dataset(root=dataset.root, clips=clips, skipped=list(dataset.skipped))
    check_trainable(regrouped)
    return regrouped


def check_trainable(dataset: Dataset) -> None:
    problems = []
    for label in LABELS:
        clips = dataset.by_label(label)
        groups = {c.group for c in clips}
        if not clips:
            problems.append(f"no usable '{label}' clips")
        elif len(clips) < MIN_CLIPS_PER_LABEL or len(groups) < MIN_GROUPS_PER_LABEL:
            problems.append(
                f"'{label}' has {len(clips)} clips in {len(groups)} groups; at least "
                f"{MIN_CLIPS_PER_LABEL} clips in {MIN_GROUPS_PER_LABEL} groups are needed for train/validation/test"
            )
    if problems:
        raise DataError(f"data set {dataset.root} is not trainable: " + "; ".join(problems))


def decode_at(path: Path, rate_hz: int) -> npt.NDArray[np.float32]:
    """A whole audio file as mono float32 at `rate_hz`, through the edge's streaming resampler."""
    audio = open_audio(path)
    resampler = StreamingResampler(audio.sample_rate_hz, rate_hz)
    parts = [resampler.push(block) for block in audio.blocks()]
    parts.append(resampler.flush())
    return np.concatenate(parts).astype(np.float32)


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write `path` through a temporary file of this writer's own beside it, then move it into place:
    runs sharing a cache may write the same entry at once, and none may move another's half-written
    file (a fixed temporary name let one run rename the file another was still writing)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cache_directory(directory: str | os.PathLike[str] | None) -> Path:
    """`--cache`'s folder, or, when none is given (None or ""), the one every command shares."""
    return Path(directory) if directory else Path.home() / ".cache" / "scream-detector" / "waves"


class WaveformCache:
    """Decoded clips at the model rate, cached on disk as .npy so epochs never decode again."""

    def __init__(self, directory: str | os.PathLike[str], rate_hz: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.rate_hz = rate_hz

    @classmethod
    def at(cls, directory: str | os.PathLike[str] | None, rate_hz: int) -> WaveformCache:
        """The cache in `directory`, or, when none is given (None or ""), the one every command
        shares: ~/.cache/scream-detector/waves."""
        return cls(cache_directory(directory), rate_hz)

    def _key(self, path: Path) -> Path:
        stat = path.stat()
        ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.rate_hz}"
        return self.directory / (hashlib.sha1(ident.encode()).hexdigest() + ".npy")

    def load(self, path: Path) -> npt.NDArray[np.float32]:
        cached = self._key(path)
        if cached.exists():
            return np.load(cached)
        samples = decode_at(path, self.rate_hz)
        write_atomically(cached, lambda f: np.save(f, samples))
        return samples
