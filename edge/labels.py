"""What a site's owner said about its saved clips: `labels.tsv` beside the clips, and the events behind them.

`labels.tsv` has one row per labelled clip (clip file name, label, time labelled, note, time
exported). Every change rewrites it whole through a temporary file and `os.replace`, so a reader
(the clip saver's retention, `scream pull` on the desk machine) sees the old file or the new one,
never half of one, and a label survives restarts. A clip labelled *scream* or *not a scream* and
not yet exported is kept by retention (`protected`); *unsure* does not hold a clip.

`EventIndex` joins the clip store with the event log `listen` writes (events.jsonl and its
rotated backups), so each clip has its time, site, peak score and model even after the log rotates
(a clip whose records rotated away is still listed, from its file name).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import ScreamError

LABELS_FILE = "labels.tsv"
COLUMNS = ("clip", "label", "time", "note", "exported")
# What the page's buttons write, and the corpus label each becomes (None: not for training).
LABELS: dict[str, str | None] = {"scream": "scream", "non_scream": "non_scream", "unsure": None}
CLIP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}\.wav$")
_CLIP_TIME = re.compile(r"^(\d{8}T\d{6})_")


class LabelError(ScreamError, ValueError):
    """A label that cannot be stored; the message says why."""


@dataclass(frozen=True)
class Label:
    clip: str
    label: str
    time: str  # ISO 8601, when it was labelled
    note: str = ""
    exported: str = ""  # ISO 8601 when `scream pull` fetched it; "" not yet

    def protects(self) -> bool:
        """True while retention must keep the clip: labelled for training and not fetched yet."""
        return LABELS.get(self.label) is not None and not self.exported


def check_clip_name(name: str) -> str:
    """A clip's bare file name as the saver writes them; anything else (a path, '..') is refused."""
    if not CLIP_NAME.match(name) or ".." in name:
        raise LabelError(f"{name!r} is not a clip name of the store (a bare <time>_<id>.wav file name)")
    return name


def _clean(text: str) -> str:
    """One TSV cell: no tabs or line breaks, at most 500 characters."""
    return " ".join(text.split())[:500]


class LabelStore:
    """labels.tsv in one clip folder, safe for the review server's threads; readers in other
    processes see whole files only."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LABELS_FILE
        self._lock = threading.Lock()

    def load(self) -> dict[str, Label]:
        """Every label by clip name; a missing file is no labels, a damaged one an error naming it."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        reader = csv.DictReader(io.StringIO(text), delimiter="\t")
        if reader.fieldnames is None or not {"clip", "label"} <= set(reader.fieldnames):
            raise LabelError(f"{self.path} is not a labels file (its header lacks clip and label)")
        labels: dict[str, Label] = {}
        for row in reader:
            clip, label = (row.get("clip") or "").strip(), (row.get("label") or "").strip()
            if clip and label in LABELS:
                labels[clip] = Label(
                    clip, label, row.get("time") or "", row.get("note") or "", row.get("exported") or ""
                )
        return labels

    def protected(self) -> set[str]:
        """Clip names retention must keep. A damaged file protects nothing rather than stopping the
        saver; the review page reports the damage."""
        try:
            return {name for name, label in self.load().items() if label.protects()}
        except LabelError:
            return set()

    def _write(self, labels: dict[str, Label]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        out = io.StringIO()
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        for name in sorted(labels):
            x = labels[name]
            writer.writerow([x.clip, x.label, x.time, x.note, x.exported])
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".labels.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(out.getvalue())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def set(self, clip: str, label: str, *, note: str = "", now: dt.datetime | None = None) -> Label:
        check_clip_name(clip)
        if label not in LABELS:
            raise LabelError(f"unknown label {label!r} (expected one of {', '.join(LABELS)})")
        moment = (now or dt.datetime.now().astimezone()).isoformat(timespec="seconds")
        with self._lock:
            labels = self.load()
            entry = Label(clip, label, moment, _clean(note))  # relabelling makes it due for export again
            labels[clip] = entry
            self._write(labels)
        return entry

    def mark_exported(self, clips: list[str], *, now: dt.datetime | None = None) -> list[str]:
        """Mark these clips fetched (retention may delete them again); returns those it marked."""
        moment = (now or dt.datetime.now().astimezone()).isoformat(timespec="seconds")
        with self._lock:
            labels = self.load()
            marked = [c for c in clips if c in labels]
            for c in marked:
                x = labels[c]
                labels[c] = Label(x.clip, x.label, x.time, x.note, moment)
            if marked:
                self._write(labels)
        return marked


@dataclass
class ClipEvent:
    """One saved clip with what the event log says about it."""

    clip: str
    exists: bool
    bytes: int = 0
    start: float | None = None  # wall-clock seconds since the epoch
    end: float | None = None
    peak_score: float | None = None
    site: str = ""
    location: str = ""
    event_id: str = ""
    model_sha256: str = ""
    schedule: str = ""
    verify_score: float | None = None  # the second stage's verdict, with a [verifier]
    vetoed: bool = False  # a candidate the verifier turned down: no alarm fired ([clips] keep_vetoed)
    label: Label | None = None

    @property
    def day(self) -> str:
        return dt.datetime.fromtimestamp(self.start).date().isoformat() if self.start is not None else ""

    def to_json(self) -> dict[str, Any]:
        started = dt.datetime.fromtimestamp(self.start).astimezone() if self.start is not None else None
        return {
            "clip": self.clip,
            "exists": self.exists,
            "bytes": self.bytes,
            "start": self.start,
            "start_text": started.isoformat(timespec="seconds") if started else "",
            "day": self.day,
            "duration_s": round(self.end - self.start, 3) if self.start is not None and self.end else None,
            "peak_score": self.peak_score,
            "site": self.site,
            "location": self.location,
            "event_id": self.event_id,
            "model_sha256": self.model_sha256,
            "schedule": self.schedule,
            "verify_score": self.verify_score,
            "vetoed": self.vetoed,
            "label": self.label.label if self.label else "",
            "note": self.label.note if self.label else "",
            "labelled": self.label.time if self.label else "",
            "exported": self.label.exported if self.label else "",
        }


def read_event_log(path: str | os.PathLike[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Event records by clip name from the log and its rotated backups (oldest first, so the newest
    record of an event wins); lines that are not JSON records are counted as problems, not fatal."""
    base = Path(path)
    backups = [p for p in base.parent.glob(base.name + ".*") if p.suffix[1:].isdigit()]
    files = sorted(backups, key=lambda p: -int(p.suffix[1:])) + ([base] if base.exists() else [])
    records: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for file in files:
        for number, line in enumerate(file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                problems.append(f"{file.name}:{number} is not JSON")
                continue
            if not isinstance(record, dict) or not isinstance(record.get("clip"), str):
                continue
            merged = records.setdefault(record["clip"], {})
            merged.update({k: v for k, v in record.items() if v is not None})
    return records, problems


def _start_from_name(name: str) -> float | None:
    match = _CLIP_TIME.match(name)
    if not match:
        return None
    return dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").timestamp()


class EventIndex:
    """The clip store, the event log and the labels, joined per clip (newest first)."""

    def __init__(self, clips_dir: str | os.PathLike[str], event_log: str | os.PathLike[str] | None) -> None:
        self.clips_dir = Path(clips_dir)
        self.event_log = Path(event_log) if event_log else None
        self.labels = LabelStore(self.clips_dir)

    def clip_path(self, name: str) -> Path:
        """The clip's path inside the store; a name that would leave it is refused."""
        path = (self.clips_dir / check_clip_name(name)).resolve()
        if path.parent != self.clips_dir.resolve():
            raise LabelError(f"{name!r} is outside the clip store")
        return path

    def events(self) -> tuple[list[ClipEvent], list[str]]:
        records, problems = read_event_log(self.event_log) if self.event_log else ({}, [])
        try:
            labels = self.labels.load()
        except LabelError as exc:
            labels, problems = {}, [*problems, str(exc)]
        on_disk = {p.name: p for p in self.clips_dir.glob("*.wav")} if self.clips_dir.is_dir() else {}
        names = set(on_disk) | set(records) | set(labels)
        events = []
        for name in names:
            if not CLIP_NAME.match(name):
                continue
            record = records.get(name, {})
            file = on_disk.get(name)
            start, end, peak = record.get("start"), record.get("end"), record.get("peak_score")
            verdict = record.get("verify_score")
            events.append(
                ClipEvent(
                    clip=name,
                    exists=file is not None,
                    bytes=file.stat().st_size if file is not None else 0,
                    start=float(start) if isinstance(start, int | float) else _start_from_name(name),
                    end=float(end) if isinstance(end, int | float) else None,
                    peak_score=float(peak) if isinstance(peak, int | float) else None,
                    site=str(record.get("site", "")),
                    location=str(record.get("location", "")),
                    event_id=str(record.get("id", "")),
                    model_sha256=str(record.get("model_sha256", "")),
                    schedule=str(record.get("schedule", "")),
                    verify_score=float(verdict) if isinstance(verdict, int | float) else None,
                    vetoed=record.get("vetoed") is True,
                    label=labels.get(name),
                )
            )
        events.sort(key=lambda e: (e.start or 0.0, e.clip), reverse=True)
        return events, problems
