"""`scream corpus build`: the training corpus rebuilt by one command from a checked-in recipe.

Every source's clips are first materialised in a cache outside the repository (Debian packages
downloaded and unpacked once, zip members extracted, files longer than `excerpt_max_s` cut into
lossless FLAC excerpts), each scored once by the teacher; then the audit decides labels, copies are
grouped, and DATA receives the clips that are in (hard links into the cache where the file system
allows), a manifest in scream-corpus-v1's columns plus the audit's, a review list and a summary.
A second run reads, writes and downloads nothing that is up to date.
"""

from __future__ import annotations

import collections
import csv
import fnmatch
import hashlib
import io
import json
import math
import os
import re
import shutil
import sys
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.audio import AUDIO_SUFFIXES, open_audio
from edge.errors import AudioError, ScreamError
from train.corpus import debian
from train.corpus.audit import (
    DuplicateReport,
    NearPair,
    Override,
    Verdict,
    category_for,
    decide,
    duplicate_groups,
    read_near_copies,
    read_overrides,
)
from train.corpus.recipe import Recipe, Rule, Source, SourceError, load_recipe
from train.corpus.teacher import RATE_HZ, ScoreCache, Teacher, TeacherScores, YamnetTeacher
from train.data import decode_at

MANIFEST_COLUMNS = (
    "path",
    "label",
    "category",
    "group",
    "source",
    "licence",
    "duration_s",
    "sample_rate",
    "channels",
    "sha1",
    # Beyond scream-corpus-v1's columns: where the clip came from and how its label was decided.
    "origin",
    "excerpt_start_s",
    "named_label",
    "decided_by",
    "teacher_scream",
    "teacher_yell",
    "teacher_shout",
    "teacher_top",
)
NEAR_COPIES = "near-copies.tsv"  # every near-copy pair the build tied, to pin with the recipe's near_copies
NEAR_COPY_COLUMNS = ("path_a", "path_b", "cosine")  # what audit.read_near_copies reads back
REVIEW_COLUMNS = ("path", "source", "named_label", "label", "teacher_scream", "teacher_top", "decision", "why")
STATE_VERSION = 1


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scream-detector" / "corpus"


class ArchiveError(ScreamError, ValueError):
    """An inner archive or one of its members that cannot be read."""


@dataclass
class Candidate:
    """One input file of a source, before it is materialised."""

    source: Source
    origin: str  # the path inside the package (ARCHIVE!MEMBER for zip members) or the data set
    identity: str  # changes when the input changes (size and CRC or mtime), checked before reading
    read: Callable[[], bytes]
    named: str  # scream | non_scream | teacher
    prior: str  # a data set's manifest label ("" for a package)
    category: str
    non_scream_category: str
    group: str
    licence: str
    max_excerpts: int = 0
    may_excerpt: bool = True
    upstream: str = ""  # a data set row's own `source` column (the project it names)


@dataclass
class Piece:
    """A file in the clip cache: a whole input file or one excerpt of it."""

    rel: str  # relative to the source's clip-cache folder and to DATA/audio/<source>/
    sha1: str
    size: int
    duration_s: float
    sample_rate: int
    channels: int
    start_s: float | None = None


@dataclass
class Clip:
    candidate: Candidate
    piece: Piece
    scores: TeacherScores
    verdict: Verdict | None = None
    group: str = ""

    @property
    def path(self) -> str:
        return f"audio/{self.candidate.source.name}/{self.piece.rel}"


@dataclass
class SourceReport:
    name: str
    label: str
    materialised: int = 0  # new pieces written to the cache this run
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class BuildResult:
    out: Path
    clips: list[Clip]
    sources: list[SourceReport]
    duplicates: DuplicateReport
    problems: list[tuple[str, str]]
    written: int  # files linked or copied into DATA this run
    removed: int  # files in DATA that the manifest no longer holds
    manifest_changed: bool
    seconds: float

    def included(self) -> list[Clip]:
        return [c for c in self.clips if c.verdict is not None and c.verdict.label != "exclude"]


def _stem_group(origin: str) -> str:
    path = origin.replace("!", "/")
    folder, _, name = path.rpartition("/")
    stem = re.sub(r"[ _.-]*\d+$", "", name.rsplit(".", 1)[0]) or name.rsplit(".", 1)[0]
    return f"{folder}/{stem}" if folder else stem


def _group_of(source: Source, rule: Rule, origin: str) -> str:
    path = origin.replace("!", "/")
    if rule.group == "file":
        key = path.rsplit(".", 1)[0]
    elif rule.group == "folder":
        key = path.rpartition("/")[0] or path
    else:
        key = _stem_group(origin)
    return f"{source.name}/{key}"


def _first_rule(rules: tuple[Rule, ...], archive: str, member: str) -> Rule | None:
    for rule in rules:
        if rule.archive == archive and fnmatch.fnmatchcase(member, rule.member):
            return rule
    return None


class _Zips:
    """Inner zip archives, opened once each."""

    def __init__(self) -> None:
        self.open: dict[Path, zipfile.ZipFile] = {}

    def get(self, path: Path) -> zipfile.ZipFile:
        if path not in self.open:
            try:
                self.open[path] = zipfile.ZipFile(path)
            except (OSError, zipfile.BadZipFile) as exc:
                raise ArchiveError(f"{path.name}: not a readable zip archive ({exc})") from exc
        return self.open[path]

    def close(self) -> None:
        for archive in self.open.values():
            archive.close()
        self.open.clear()


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            return archive.read(info)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
            raise ArchiveError(f"{label}: corrupt archive member ({exc})") from exc

    return read


def debian_candidates(
    source: Source, root: Path, stanzas: list[debian.CopyrightStanza], zips: _Zips, report: SourceReport
) -> Iterator[Candidate]:
    """Every file of an unpacked package that a rule takes, and each zip member likewise."""
    archives = sorted({r.archive for r in source.rules if r.archive})
    used: collections.Counter[str] = collections.Counter()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".unpacked")
    for path in files:
        rel = path.relative_to(root).as_posix()
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        rule = _first_rule(source.rules, "", rel)
        if rule is None or rule.label == "exclude":
            if rule is not None:
                used[rule.match] += 1
            continue
        used[rule.match] += 1
        stat = path.stat()
        yield _candidate(source, rule, rel, f"file:{stat.st_size}:{stat.st_mtime_ns}", path.read_bytes, stanzas)
    for archive_rel in archives:
        archive_path = root / archive_rel
        if not archive_path.is_file():
            report.warnings.append(f"archive {archive_rel} is not in the package")
            continue
        try:
            archive = zips.get(archive_path)
        except ArchiveError as exc:
            report.skipped.append((archive_rel, str(exc)))
            continue
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            if info.is_dir() or Path(info.filename).suffix.lower() not in AUDIO_SUFFIXES:
                continue
            rule = _first_rule(source.rules, archive_rel, info.filename)
            if rule is None:
                continue
            used[rule.match] += 1
            if rule.label == "exclude":
                continue
            origin = f"{archive_rel}!{info.filename}"
            read = _read_member(archive, info, origin)
            yield _candidate(source, rule, origin, f"zip:{info.file_size}:{info.CRC:08x}", read, stanzas)
    for rule in source.rules:
        if used[rule.match] == 0:
            report.warnings.append(f"pattern {rule.match!r} matches no audio file")


def _candidate(
    source: Source, rule: Rule, origin: str, identity: str, read: Callable[[], bytes], stanzas: list[Any]
) -> Candidate:
    return Candidate(
        source=source,
        origin=origin,
        identity=identity,
        read=read,
        named=rule.label,
        prior="",
        category=rule.category,
        non_scream_category=rule.non_scream_category,
        group=_group_of(source, rule, origin),
        licence=debian.licence_for(stanzas, origin.split("!", 1)[0], source.licence),
        max_excerpts=rule.max_excerpts,
    )


def dataset_candidates(source: Source, folder: Path, report: SourceReport) -> Iterator[Candidate]:
    """The rows of a data set's manifest, labels and groups as it gives them."""
    manifest = folder / "manifest.tsv"
    if not manifest.is_file():
        raise SourceError(f"{folder}: no manifest.tsv (is --shared right?)")
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    for number, row in enumerate(rows, start=2):
        rel, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        if not rel or label not in ("scream", "non_scream"):
            report.skipped.append((f"manifest.tsv:{number}", f"no path or an unknown label {label!r}"))
            continue
        path = folder / rel
        if not path.is_file():
            report.skipped.append((rel, "listed in the manifest but missing"))
            continue
        stat = path.stat()
        category = (row.get("category") or "").strip()
        yield Candidate(
            source=source,
            origin=rel,
            identity=f"file:{stat.st_size}:{stat.st_mtime_ns}",
            read=path.read_bytes,
            named="teacher" if category in source.teacher_decides else label,
            prior=label,
            category=category,
            non_scream_category="vocal_effort" if category in source.teacher_decides else "",
            group=(row.get("group") or "").strip() or f"{source.name}/{rel}",
            licence=(row.get("licence") or "").strip() or source.licence,
            may_excerpt=False,
            upstream=(row.get("source") or "").strip(),
        )


class ClipStore:
    """A source's materialised clips in the cache, with a state file recording what made each."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state_path = folder / ".state.json"
        try:
            raw = json.loads(self.state_path.read_text())
            self.state: dict[str, Any] = raw["entries"] if raw.get("version") == STATE_VERSION else {}
        except (OSError, ValueError, KeyError):
            self.state = {}
        self.dirty = False

    def lookup(self, candidate: Candidate, spec: str) -> list[Piece] | None:
        entry = self.state.get(candidate.origin)
        if not entry or entry.get("identity") != candidate.identity or entry.get("spec") != spec:
            return None
        pieces = [Piece(**p) for p in entry["pieces"]]
        for piece in pieces:
            target = self.folder / piece.rel
            if not target.is_file() or target.stat().st_size != piece.size:
                return None
        return pieces

    def record(self, candidate: Candidate, spec: str, pieces: list[Piece]) -> None:
        self.state[candidate.origin] = {
            "identity": candidate.identity,
            "spec": spec,
            "pieces": [piece.__dict__ for piece in pieces],
        }
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"version": STATE_VERSION, "entries": self.state}, sort_keys=True))
            tmp.replace(self.state_path)
            self.dirty = False


def _sha1(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


def _out_rel(origin: str) -> str:
    return origin.replace("!", "/")


def materialise(candidate: Candidate, store: ClipStore, excerpt_max_s: float) -> tuple[list[Piece], bool]:
    """The candidate's pieces in the clip cache (written unless up to date) and whether any was written.
    Raises `AudioError` or `ArchiveError` for an input that cannot be used."""
    spec = f"excerpt<={excerpt_max_s:g}s,max={candidate.max_excerpts}" if candidate.may_excerpt else "whole"
    known = store.lookup(candidate, spec)
    if known is not None:
        return known, False
    rel = _out_rel(candidate.origin)
    target = store.folder / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    data = candidate.read()
    staging = target.with_name(target.name + ".part")
    staging.write_bytes(data)
    try:
        audio = open_audio(staging)
        whole = not candidate.may_excerpt or audio.duration_s <= excerpt_max_s
        if whole:
            _decode_check(staging)
    except AudioError as exc:
        staging.unlink()
        raise AudioError(str(exc).replace(str(staging), candidate.origin)) from exc
    if whole:
        staging.replace(target)
        piece = Piece(
            rel,
            hashlib.sha1(data).hexdigest(),
            len(data),
            round(audio.duration_s, 3),
            audio.sample_rate_hz,
            audio.channels,
        )
        pieces = [piece]
    else:
        try:
            pieces = _excerpts(staging, rel, store.folder, audio.duration_s, excerpt_max_s, candidate.max_excerpts)
        finally:
            staging.unlink(missing_ok=True)
    store.record(candidate, spec, pieces)
    return pieces, True


def _decode_check(path: Path) -> None:
    """Decode the whole file once: a truncated or corrupt stream fails here, not in training."""
    for _ in open_audio(path).blocks():
        pass


def _excerpts(staging: Path, rel: str, folder: Path, duration_s: float, max_s: float, keep: int) -> list[Piece]:
    """Equal excerpts of at most `max_s`, at most `keep` of them spread evenly, as lossless FLAC."""
    import soundfile

    count = math.ceil(duration_s / max_s - 1e-9)
    chosen = sorted({round(k) for k in np.linspace(0, count - 1, keep)}) if 0 < keep < count else range(count)
    pieces = []
    try:
        with soundfile.SoundFile(str(staging)) as handle:
            rate, channels, frames = handle.samplerate, handle.channels, handle.frames
            subtype = "PCM_16" if handle.subtype in ("PCM_16", "PCM_S8", "PCM_U8") else "PCM_24"
            length = math.ceil(frames / count)
            for k in chosen:
                handle.seek(k * length)
                block = handle.read(min(length, frames - k * length), dtype="float32", always_2d=True)
                stem = rel.rsplit(".", 1)[0]
                piece_rel = f"{stem}.part{k + 1:02d}of{count:02d}.flac"
                target = folder / piece_rel
                tmp = target.with_name(target.name + ".part")
                soundfile.write(str(tmp), np.clip(block, -1.0, 1.0), rate, subtype=subtype, format="FLAC")
                tmp.replace(target)
                pieces.append(
                    Piece(
                        piece_rel,
                        _sha1(target),
                        target.stat().st_size,
                        round(block.shape[0] / rate, 3),
                        rate,
                        channels,
                        round(k * length / rate, 3),
                    )
                )
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise AudioError(f"{rel}: decoding failed while cutting excerpts ({exc})") from exc
    return pieces


@dataclass(frozen=True)
class TeacherView:
    """The teacher's class names and the indices of the classes the manifest reports."""

    names: list[str]
    indices: tuple[int, int, int]  # scream class, Yell, Shout

    @classmethod
    def of(cls, teacher: Teacher, scream_class: str) -> TeacherView:
        names = list(teacher.class_names)
        if scream_class not in names:
            raise ScreamError(f"the teacher has no class {scream_class!r} (recipe teacher.scream_class)")
        scream = names.index(scream_class)
        yell = names.index("Yell") if "Yell" in names else scream
        shout = names.index("Shout") if "Shout" in names else scream
        return cls(names, (scream, yell, shout))


def _top(scores: TeacherScores, names: list[str]) -> str:
    return "; ".join(f"{name} {value:.2f}" for name, value in scores.top(names, 3))


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build(
    recipe_path: str | Path,
    out: str | Path,
    *,
    shared: str | Path = "../shared",
    cache: str | Path | None = None,
    offline: bool = False,
    teacher: Teacher | None = None,
    progress: Callable[[str], None] = _progress,
) -> BuildResult:
    """Build DATA from the recipe; see the module docstring. Returns what was built and skipped."""
    started = time.monotonic()
    recipe = load_recipe(recipe_path)
    shared_dir, out_dir = Path(shared), Path(out)
    cache_dir = Path(cache) if cache else default_cache()
    if teacher is None:
        teacher = YamnetTeacher(shared_dir / recipe.teacher.model)
    view = TeacherView.of(teacher, recipe.teacher.scream_class)
    score_cache = ScoreCache(cache_dir / "teacher", teacher.identity)
    overrides = read_overrides(recipe.overrides_path)
    pinned = read_near_copies(recipe.near_copies_path)
    reports: list[SourceReport] = []
    clips: list[Clip] = []
    problems = list(recipe.problems)
    for name, why in recipe.problems:
        progress(f"source {name}: left out: {why}")
    zips = _Zips()
    try:
        for number, source in enumerate(recipe.sources, start=1):
            report = SourceReport(source.name, source.label)
            reports.append(report)
            progress(f"[{number}/{len(recipe.sources)}] {source.label}")
            try:
                candidates = _candidates_of(source, shared_dir, cache_dir, offline, zips, report)
                store = ClipStore(cache_dir / "clips" / source.name)
                _collect(candidates, store, recipe, teacher, score_cache, report, clips, progress)
                store.save()
            except (SourceError, ArchiveError, OSError) as exc:
                problems.append((source.name, str(exc)))
                progress(f"  {source.name}: left out: {exc}")
            for why in report.warnings:
                progress(f"  {source.name}: warning: {why}")
            zips.close()
    finally:
        zips.close()
    _audit(clips, recipe, overrides, view.indices[0])
    duplicates = _group_duplicates(clips, recipe, pinned)
    for a, b, cosine in duplicates.unpinned_borderline:
        progress(f"near-copies: {a} and {b} (cosine {cosine:.5f}, within the margin) are not pinned: left apart")
    for a, b, cosine in duplicates.pins_below:
        progress(f"near-copies: pinned {a} and {b} are at cosine {cosine:.5f} here, below the margin: tied as pinned")
    written, removed, changed = _write_out(out_dir, clips, cache_dir, view, reports, duplicates.label_conflicts)
    _write_if_changed(out_dir / NEAR_COPIES, near_copies_tsv(duplicates.near_pairs))
    result = BuildResult(
        out_dir, clips, reports, duplicates, problems, written, removed, changed, time.monotonic() - started
    )
    _write_summary(result, recipe, overrides)
    return result


def _candidates_of(
    source: Source, shared: Path, cache: Path, offline: bool, zips: _Zips, report: SourceReport
) -> list[Candidate]:
    if not source.is_debian:
        return list(dataset_candidates(source, shared / source.path, report))
    deb = debian.fetch(source.package, source.version, cache / "debs", sha256=source.sha256, offline=offline)
    root = debian.unpack(deb, cache / "unpacked" / deb.stem)
    copyright_file = root / "usr/share/doc" / source.package / "copyright"
    stanzas = debian.read_copyright(copyright_file)
    if copyright_file.is_file():
        provenance = cache / "provenance" / source.name
        provenance.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(copyright_file, provenance / "copyright")
    return list(debian_candidates(source, root, stanzas, zips, report))


def _collect(
    candidates: list[Candidate],
    store: ClipStore,
    recipe: Recipe,
    teacher: Teacher,
    score_cache: ScoreCache,
    report: SourceReport,
    clips: list[Clip],
    progress: Callable[[str], None],
) -> None:
    last = time.monotonic()
    for done, candidate in enumerate(candidates, start=1):
        try:
            pieces, wrote = materialise(candidate, store, recipe.excerpt_max_s)
            report.materialised += len(pieces) if wrote else 0
            for piece in pieces:
                scores = score_cache.get(piece.sha1)
                if scores is None:
                    scores = teacher.analyse(decode_at(store.folder / piece.rel, RATE_HZ))
                    score_cache.put(piece.sha1, scores)
                clips.append(Clip(candidate, piece, scores))
        except (AudioError, ArchiveError) as exc:
            why = str(exc).removeprefix(f"{candidate.origin}: ")
            report.skipped.append((candidate.origin, why))
            progress(f"  skipped {candidate.origin}: {why}")
        if time.monotonic() - last > 10 or done == len(candidates):
            progress(f"  {done}/{len(candidates)} files, {report.materialised} new, {len(report.skipped)} skipped")
            last = time.monotonic()
            store.save()


def _audit(clips: list[Clip], recipe: Recipe, overrides: dict[str, Override], scream: int) -> None:
    for clip in clips:
        candidate = clip.candidate
        clip.verdict = decide(
            named=candidate.named,
            category=candidate.category,
            non_scream_category=candidate.non_scream_category,
            score=float(clip.scores.max_scores[scream]),
            rules=recipe.teacher,
            audit=candidate.source.audit,
            on_disagreement=candidate.source.on_disagreement,
            prior=candidate.prior,
        )
        override = overrides.get(clip.path)
        if override is not None:
            clip.verdict = Verdict(
                override.label,
                category_for(override.label, candidate.category, candidate.non_scream_category),
                "override",
                f"override: {override.reason}",
            )


def _group_duplicates(clips: list[Clip], recipe: Recipe, pinned: frozenset[NearPair] | None) -> DuplicateReport:
    if not clips:
        return DuplicateReport()
    groups, report = duplicate_groups(
        sha1s=[c.piece.sha1 for c in clips],
        embeddings=np.stack([c.scores.embedding for c in clips]),
        durations_s=[c.piece.duration_s for c in clips],
        groups=[c.candidate.group for c in clips],
        sources=[c.candidate.source.name for c in clips],
        labels=[c.verdict.label if c.verdict else "" for c in clips],
        rules=recipe.teacher,
        paths=[c.path for c in clips],
        pinned=pinned,
    )
    for clip, group in zip(clips, groups, strict=True):
        clip.group = group
    return report


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    tmp.replace(dst)


def _manifest_row(clip: Clip, view: TeacherView) -> dict[str, str]:
    assert clip.verdict is not None
    source = clip.candidate.source
    piece = clip.piece
    scream, yell, shout = (float(clip.scores.max_scores[i]) for i in view.indices)
    upstream = clip.candidate.upstream
    return {
        "path": clip.path,
        "label": clip.verdict.label,
        "category": clip.verdict.category,
        "group": clip.group,
        "source": upstream
        or source.label
        + (f" ({clip.candidate.origin.split('!')[0].rsplit('/', 1)[-1]})" if "!" in clip.candidate.origin else ""),
        "licence": clip.candidate.licence,
        "duration_s": f"{piece.duration_s:.3f}",
        "sample_rate": str(piece.sample_rate),
        "channels": str(piece.channels),
        "sha1": piece.sha1,
        "origin": f"{source.name}:{clip.candidate.origin}",
        "excerpt_start_s": "" if piece.start_s is None else f"{piece.start_s:.3f}",
        "named_label": clip.candidate.prior or clip.candidate.named,
        "decided_by": clip.verdict.decided_by,
        "teacher_scream": f"{scream:.4f}",
        "teacher_yell": f"{yell:.4f}",
        "teacher_shout": f"{shout:.4f}",
        "teacher_top": _top(clip.scores, view.names),
    }


def _review_row(clip: Clip, view: TeacherView, decision: str, why: str) -> dict[str, str]:
    assert clip.verdict is not None
    return {
        "path": clip.path,
        "source": clip.candidate.source.name,
        "named_label": clip.candidate.prior or clip.candidate.named,
        "label": clip.verdict.label,
        "teacher_scream": f"{float(clip.scores.max_scores[view.indices[0]]):.4f}",
        "teacher_top": _top(clip.scores, view.names),
        "decision": decision,
        "why": why,
    }


def _tsv(rows: list[dict[str, str]], columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def near_copies_tsv(pairs: list[tuple[str, str, float]]) -> str:
    """DATA/near-copies.tsv: every pair the build tied as near-copies, with its cosine on this machine."""
    rows = [dict(zip(NEAR_COPY_COLUMNS, (a, b, f"{cos:.6f}"), strict=True)) for a, b, cos in sorted(pairs)]
    return _tsv(rows, NEAR_COPY_COLUMNS)


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return True


def _write_out(
    out: Path,
    clips: list[Clip],
    cache: Path,
    view: TeacherView,
    reports: list[SourceReport],
    conflicts: list[list[int]],
) -> tuple[int, int, bool]:
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    keep: set[Path] = set()
    for clip in clips:
        if clip.verdict is None or clip.verdict.label == "exclude":
            continue
        src = cache / "clips" / clip.candidate.source.name / clip.piece.rel
        dst = out / clip.path
        keep.add(dst)
        if dst.is_file() and (os.path.samefile(src, dst) or dst.stat().st_size == clip.piece.size):
            continue
        _link(src, dst)
        written += 1
    removed = 0
    audio_root = out / "audio"
    if audio_root.is_dir():
        for path in sorted(audio_root.rglob("*"), reverse=True):
            if path.is_file() and path not in keep:
                path.unlink()
                removed += 1
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    for report in reports:
        copyright_file = cache / "provenance" / report.name / "copyright"
        if copyright_file.is_file():
            (out / "provenance" / report.name).mkdir(parents=True, exist_ok=True)
            _write_if_changed(
                out / "provenance" / report.name / "copyright", copyright_file.read_text(errors="replace")
            )
    rows = [_manifest_row(c, view) for c in clips if c.verdict and c.verdict.label != "exclude"]
    rows.sort(key=lambda r: r["path"])
    changed = _write_if_changed(out / "manifest.tsv", _tsv(rows, MANIFEST_COLUMNS))
    review = []
    for clip in sorted(clips, key=lambda c: c.path):
        verdict = clip.verdict
        overridden = verdict is not None and verdict.decided_by == "override"
        if verdict is None or not (verdict.review or overridden or verdict.would not in ("", verdict.label)):
            continue
        named = clip.candidate.prior or clip.candidate.named
        if verdict.would:
            decision = f"kept as {verdict.label}; the audit would make it {verdict.would}"
        elif verdict.label == "exclude":
            decision = "left out"
        elif verdict.label != named and named != "teacher":
            decision = f"relabelled {named} -> {verdict.label}"
        else:
            decision = f"{verdict.label} ({verdict.decided_by})"
        review.append(_review_row(clip, view, decision, verdict.review))
    for members in conflicts:
        labels = ", ".join(sorted({f"{clips[i].path} ({clips[i].verdict.label})" for i in members if clips[i].verdict}))
        review += [
            _review_row(clips[i], view, "copies disagree on the label", labels) for i in members if clips[i].verdict
        ]
    _write_if_changed(out / "review.tsv", _tsv(review, REVIEW_COLUMNS))
    return written, removed, changed


def audit_counts(clips: list[Clip]) -> dict[str, dict[str, int]]:
    """Per source: how the audit changed (or, report-only, would change) labels."""
    out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for clip in clips:
        verdict = clip.verdict
        if verdict is None:
            continue
        counts = out[clip.candidate.source.name]
        named = clip.candidate.prior or clip.candidate.named
        counts["clips"] += 1
        if "disagrees" in verdict.decided_by:
            counts["disagreements"] += 1
        if verdict.would:
            if verdict.would == "exclude":
                counts["would_drop"] += 1
            elif verdict.would != named:
                counts["would_relabel"] += 1
            continue
        if verdict.decided_by == "teacher":
            counts[f"teacher_{verdict.label}"] += 1
        if verdict.label == "exclude":
            counts["dropped"] += 1
        elif named in ("scream", "non_scream") and verdict.label != named:
            counts["relabelled"] += 1
        if verdict.decided_by == "override":
            counts["overridden"] += 1
    return {name: dict(counts) for name, counts in out.items()}


def summary_tables(result: BuildResult) -> dict[str, Any]:
    included = result.included()
    by_source: dict[str, dict[str, Any]] = {}
    for clip in included:
        assert clip.verdict is not None
        entry = by_source.setdefault(
            clip.candidate.source.name,
            {"label": clip.candidate.source.label, "scream": [0, 0.0], "non_scream": [0, 0.0], "licences": set()},
        )
        entry[clip.verdict.label][0] += 1
        entry[clip.verdict.label][1] += clip.piece.duration_s / 60
        entry["licences"].add(clip.candidate.licence.replace(" (debian/copyright)", "").replace(" (recipe)", ""))
    by_category: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for clip in included:
        assert clip.verdict is not None
        cell = by_category[(clip.verdict.label, clip.verdict.category)]
        cell[0] += 1
        cell[1] += clip.piece.duration_s / 60
    totals = {
        label: [
            sum(cell[0] for (of, _), cell in by_category.items() if of == label),
            sum(cell[1] for (of, _), cell in by_category.items() if of == label),
        ]
        for label in ("scream", "non_scream")
    }
    return {"by_source": by_source, "by_category": dict(by_category), "totals": totals}


def _write_summary(result: BuildResult, recipe: Recipe, overrides: dict[str, Override]) -> None:
    tables = summary_tables(result)
    audits = audit_counts(result.clips)
    dup = result.duplicates
    lines = [
        f"# {recipe.name}",
        "",
        f"Built by `scream corpus build --recipe {recipe.path.name}`: {len(result.included())} clips "
        f"({tables['totals']['scream'][0]} screams, {tables['totals']['scream'][1]:.1f} min; "
        f"{tables['totals']['non_scream'][0]} non-screams, {tables['totals']['non_scream'][1]:.1f} min) "
        f"from {len(tables['by_source'])} sources.",
        "",
        "| source | screams | min | non-screams | min | licences |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for _name, entry in sorted(tables["by_source"].items()):
        lines.append(
            f"| {entry['label']} | {entry['scream'][0]} | {entry['scream'][1]:.1f} | {entry['non_scream'][0]} | "
            f"{entry['non_scream'][1]:.1f} | {', '.join(sorted(entry['licences']))[:160]} |"
        )
    lines += ["", "| label | category | clips | min |", "| --- | --- | ---: | ---: |"]
    for (label, category), (count, minutes) in sorted(tables["by_category"].items()):
        lines.append(f"| {label} | {category} | {count} | {minutes:.1f} |")
    lines += [
        "",
        f"Teacher audit (peak '{recipe.teacher.scream_class}': scream at >= {recipe.teacher.scream_at}, "
        f"non-scream below {recipe.teacher.non_scream_below}, in between left out; {len(overrides)} overrides):",
        "",
        "| source | clips | teacher: scream | teacher: non-scream | dropped | relabelled | teacher disagrees | "
        "would relabel (report only) | would drop (report only) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, counts in sorted(audits.items()):
        lines.append(
            f"| {name} | {counts.get('clips', 0)} | {counts.get('teacher_scream', 0)} "
            f"| {counts.get('teacher_non_scream', 0)} "
            f"| {counts.get('dropped', 0)} | {counts.get('relabelled', 0)} | {counts.get('disagreements', 0)} "
            f"| {counts.get('would_relabel', 0)} | {counts.get('would_drop', 0)} |"
        )
    lines += [
        "",
        f"Duplicates: {dup.exact_clusters} sets of exact copies ({dup.exact_clips} clips), {dup.near_clusters} sets of "
        f"near-copies ({dup.near_clips} clips; embedding cosine >= {recipe.teacher.near_duplicate_cosine}, lengths "
        f"within {recipe.teacher.near_duplicate_length:.0%}); {dup.cross_source_clusters} sets span sources; "
        f"{dup.groups_merged} groups merged; {len(dup.label_conflicts)} sets hold both labels.",
    ]
    if recipe.near_copies:
        lines += [
            "",
            f"Near-copies pinned by `{recipe.near_copies}` (pairs within {recipe.teacher.near_copy_margin:g} of the "
            f"threshold are copies only when pinned): {len(dup.unpinned_borderline)} unpinned pairs within the "
            f"margin left apart, {len(dup.pins_below)} pins below it tied as pinned, {dup.pins_unused} pins name "
            f"clips this build does not hold. Every pair tied is in `{NEAR_COPIES}`.",
        ]
    skipped = [(r.name, path, why) for r in result.sources for path, why in r.skipped]
    if result.problems or skipped:
        lines += ["", "Left out:", ""]
        lines += [f"- source {name}: {why}" for name, why in result.problems]
        lines += [f"- {name}: {path}: {why}" for name, path, why in skipped]
    text = "\n".join(lines) + "\n"
    _write_if_changed(result.out / "summary.md", text)
    print(text)
