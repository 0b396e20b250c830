"""`scream corpus build` on a tiny Debian package built here with dpkg-deb, fetched through a fake
`apt-get` on PATH (no network), and a tiny data set in scream-corpus-v1's layout."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from edge.audio import write_wav
from edge.classifier import sha256_file
from tests.helpers import require_program
from train.corpus import audit, debian
from train.corpus.build import MANIFEST_COLUMNS, BuildResult, build, near_copies_tsv
from train.corpus.recipe import RecipeError, TeacherRules, load_recipe
from train.corpus.teacher import TeacherScores, YamnetTeacher, clip_windows
from train.data import load_dataset


@pytest.fixture(autouse=True)
def _dpkg() -> None:
    require_program("dpkg-deb")


RATE = 16000
SHARED_YAMNET = Path(__file__).resolve().parents[2].parent / "shared" / "models" / "yamnet"
PACKAGE, VERSION = "scream-test-sounds", "1:1.0-1"
COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: scream-test-sounds

Files: *
Copyright: 2026 Nobody
License: GPL-2+
 Text of the licence.

Files: music/*
Copyright: 2026 Somebody
License: CC-BY-4.0
"""


def tone(freq_hz: float, seconds: float, *, rate: int = RATE, seed: int = 0, noise: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.4 * np.sin(2 * np.pi * freq_hz * t)
    if noise:
        signal += noise * np.random.default_rng(seed).standard_normal(t.size)
    return signal.astype(np.float32)


class StandInTeacher:
    """A deterministic teacher for tests: 'Screaming' follows the clip's dominant frequency (above
    2 kHz: 0.9, 1-2 kHz: 0.15, below: 0.01); the embedding is the clip's coarse spectrum."""

    identity = "stand-in:1"

    def __init__(self) -> None:
        self.class_names = ["Speech", "Screaming", "Yell", "Shout"]
        self.calls = 0

    def analyse(self, samples: npt.NDArray[np.float32]) -> TeacherScores:
        self.calls += 1
        spectrum = np.abs(np.fft.rfft(samples[: RATE * 4], n=8192))
        peak_hz = float(np.argmax(spectrum)) * RATE / 8192
        scream = 0.9 if peak_hz > 2000 else 0.15 if peak_hz > 1000 else 0.01
        scores = np.array([1 - scream, scream, scream / 2, scream / 3], dtype=np.float32)
        coarse = spectrum[:4096].reshape(64, 64).sum(axis=1).astype(np.float32)
        return TeacherScores(scores, scores, coarse / np.linalg.norm(coarse))


def write_ogg(path: Path, samples: np.ndarray, rate: int = RATE) -> None:
    import soundfile

    soundfile.write(str(path), samples, rate, format="OGG", subtype="VORBIS")


def wav_bytes(samples: np.ndarray, tmp: Path) -> bytes:
    write_wav(tmp, samples, RATE)
    return tmp.read_bytes()


def make_deb(root: Path, *, version: str = VERSION) -> Path:
    """A package with screams, an ambiguous voice, beeps (one exact and one near copy), a long music
    file, an undecodable file and a zip holding an alarm and a corrupt member."""
    tree = root / "tree"
    game = tree / "usr/share/games/testgame"
    for sub in ("voices", "sfx", "music"):
        (game / sub).mkdir(parents=True)
    write_wav(game / "voices/scream1.wav", tone(3000, 1.5), RATE)
    write_wav(game / "voices/scream2.wav", tone(3500, 1.2, noise=0.05), RATE)
    write_wav(game / "voices/scream3.wav", tone(3200, 0.9), RATE)
    write_wav(game / "voices/scream4.wav", tone(2700, 1.1, noise=0.02), RATE)
    write_ogg(game / "voices/death1.ogg", tone(1500, 1.0))
    write_ogg(game / "voices/death2.ogg", tone(300, 1.0))
    write_wav(game / "sfx/beep.wav", tone(600, 0.8), RATE)
    shutil.copyfile(game / "sfx/beep.wav", game / "sfx/beep_copy.wav")
    write_wav(game / "sfx/beep_near.wav", tone(600, 0.82, noise=0.002, seed=3), RATE)
    write_wav(game / "sfx/hum.wav", tone(120, 2.0), RATE)
    write_wav(game / "sfx/whistle.wav", tone(2500, 1.0), RATE)  # byte for byte the data set's scream a.wav
    (game / "sfx/broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    write_ogg(game / "music/long.ogg", tone(440, 70.0, noise=0.01))
    members = io.BytesIO()
    with zipfile.ZipFile(members, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("sounds/alarm1.wav", wav_bytes(tone(900, 1.0), root / "a.wav"))
        archive.writestr("sounds/corrupt.wav", wav_bytes(tone(700, 1.0, noise=0.3), root / "b.wav"))
    raw = bytearray(members.getvalue())
    # Flip bytes inside the second member's compressed data: its CRC check fails on reading.
    offset = raw.find(b"sounds/corrupt.wav") + len("sounds/corrupt.wav") + 40
    raw[offset : offset + 16] = bytes(16)
    (game / "data.zip").write_bytes(bytes(raw))
    doc = tree / "usr/share/doc" / PACKAGE
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT)
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN/control").write_text(
        f"Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\nMaintainer: Test <t@example.org>\n"
        "Description: test sounds\n"
    )
    deb = root / "repo" / f"{PACKAGE}_{version.replace(':', '%3a')}_all.deb"
    deb.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], check=True, capture_output=True)
    return deb


FAKE_APT = """#!/bin/sh
# apt-get download PKG=VERSION from a local folder, as the archive would answer.
echo "$@" >> "$FAKE_APT_LOG"
[ "$1" = download ] || exit 100
pkg="${2%%=*}"; ver="${2#*=}"
file="$FAKE_APT_REPO/${pkg}_$(printf %s "$ver" | sed 's/:/%3a/')_all.deb"
if [ ! -f "$file" ]; then echo "E: Version '$ver' for '$pkg' was not found" >&2; exit 100; fi
if [ -n "$FAKE_APT_CUT" ]; then head -c 2000 "$file" > "$(basename "$file")"; else cp "$file" .; fi
"""


@pytest.fixture
def fake_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "apt-get"
    script.write_text(FAKE_APT)
    script.chmod(0o755)
    log = tmp_path / "apt.log"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_APT_REPO", str(tmp_path / "pkgs" / "repo"))
    monkeypatch.setenv("FAKE_APT_LOG", str(log))
    return log


def make_dataset(shared: Path) -> None:
    folder = shared / "data" / "mini"
    (folder / "audio").mkdir(parents=True)
    rows = [
        ("audio/a.wav", "scream", "scream", "g1", tone(2500, 1.0)),
        ("audio/b.wav", "scream", "scream_death", "g2", tone(250, 1.0)),
        ("audio/c.wav", "non_scream", "sfx", "g3", tone(800, 1.0)),
    ]
    with (folder / "manifest.tsv").open("w") as handle:
        handle.write("path\tlabel\tcategory\tgroup\tsource\tlicence\n")
        for rel, label, category, group, samples in rows:
            write_wav(folder / rel, samples, RATE)
            handle.write(f"{rel}\t{label}\t{category}\t{group}\tupstream:mini 1\tCC0-1.0\n")


RULES = """
  [[source.rule]]
  match = "usr/share/games/testgame/voices/scream*"
  label = "scream"
  category = "scream_game"
  [[source.rule]]
  match = "usr/share/games/testgame/voices/*"
  label = "teacher"
  category = "scream_game"
  non_scream_category = "vocal_effort"
  [[source.rule]]
  match = "usr/share/games/testgame/music/*"
  label = "non_scream"
  category = "music"
  group = "file"
  max_excerpts = 2
  [[source.rule]]
  match = "usr/share/games/testgame/data.zip!sounds/*"
  label = "non_scream"
  category = "alarm"
  group = "file"
  [[source.rule]]
  match = "usr/share/games/testgame/sfx/*"
  label = "non_scream"
  category = "sfx"
  group = "file"
  [[source.rule]]
  match = "usr/share/games/testgame/nothing/*"
  label = "non_scream"
  category = "sfx"
"""


def write_recipe(
    folder: Path, *, version: str = VERSION, sha256: str = "", extra: str = "", near_copies: str = ""
) -> Path:
    recipe = folder / "recipe.toml"
    pin = f'sha256 = "{sha256}"\n' if sha256 else ""
    pinned = f'near_copies = "{near_copies}"\n' if near_copies else ""
    recipe.write_text(
        f"""name = "test-corpus"
excerpt_max_s = 30.0
overrides = "overrides.tsv"
{pinned}
[teacher]
scream_at = 0.3
non_scream_below = 0.05
near_duplicate_cosine = 0.995

[[source]]
name = "mini"
path = "data/mini"
teacher_decides = ["scream_death"]
audit = "report"

[[source]]
name = "testgame"
package = "{PACKAGE}"
version = "{version}"
{pin}licence = "GPL-2+"
{RULES}
{extra}"""
    )
    overrides = folder / "overrides.tsv"
    if not overrides.exists():
        overrides.write_text("# comment\npath\tlabel\treason\n")
    return recipe


@pytest.fixture
def world(tmp_path: Path, fake_apt: Path) -> dict[str, Path]:
    deb = make_deb(tmp_path / "pkgs")
    shared = tmp_path / "shared"
    make_dataset(shared)
    recipe_dir = tmp_path / "recipe"
    recipe_dir.mkdir()
    return {
        "deb": deb,
        "shared": shared,
        "recipe": write_recipe(recipe_dir),
        "cache": tmp_path / "cache",
        "out": tmp_path / "DATA",
        "apt_log": fake_apt,
    }


def run_build(world: dict[str, Path], teacher: StandInTeacher | None = None, **kwargs: object) -> BuildResult:
    messages: list[str] = []
    result = build(
        world["recipe"],
        world["out"],
        shared=world["shared"],
        cache=world["cache"],
        teacher=teacher or StandInTeacher(),
        progress=messages.append,
        **kwargs,  # type: ignore[arg-type]
    )
    result.messages = messages  # type: ignore[attr-defined]
    return result


def read_manifest(out: Path) -> dict[str, dict[str, str]]:
    with (out / "manifest.tsv").open(newline="") as handle:
        return {row["path"]: row for row in csv.DictReader(handle, delimiter="\t")}


def test_build_writes_the_corpus_with_labels_licences_excerpts_and_groups(world: dict[str, Path]) -> None:
    result = run_build(world)
    rows = read_manifest(world["out"])
    header = (world["out"] / "manifest.tsv").read_text().splitlines()[0].split("\t")
    assert tuple(header) == MANIFEST_COLUMNS
    game = "audio/testgame/usr/share/games/testgame"
    # Named screams, and the teacher deciding the ambiguous voices: 1500 Hz is in between (left
    # out), 300 Hz is not a scream (its non-scream category).
    assert rows[f"{game}/voices/scream1.wav"]["label"] == "scream"
    assert rows[f"{game}/voices/scream1.wav"]["decided_by"] == "name"
    assert f"{game}/voices/death1.ogg" not in rows
    death2 = rows[f"{game}/voices/death2.ogg"]
    assert (death2["label"], death2["category"], death2["decided_by"]) == ("non_scream", "vocal_effort", "teacher")
    assert not (world["out"] / f"{game}/voices/death1.ogg").exists()
    # Licences from debian/copyright: the last matching stanza wins.
    assert rows[f"{game}/voices/scream1.wav"]["licence"] == "GPL-2+ (debian/copyright)"
    music = sorted(p for p in rows if "/music/" in p)
    assert music == [f"{game}/music/long.part01of03.flac", f"{game}/music/long.part03of03.flac"]
    for path in music:
        row = rows[path]
        assert row["licence"] == "CC-BY-4.0 (debian/copyright)"
        assert float(row["duration_s"]) <= 30.0
        assert row["group"] == "testgame/usr/share/games/testgame/music/long"
        assert hashlib.sha1((world["out"] / path).read_bytes()).hexdigest() == row["sha1"]
    assert [rows[p]["excerpt_start_s"] for p in music] == ["0.000", "46.667"]
    # Zip members, the source naming the archive; the corrupt member and the broken file are skipped
    # by name while the rest is built.
    alarm = rows[f"{game}/data.zip/sounds/alarm1.wav"]
    assert alarm["source"] == f"debian:{PACKAGE} {VERSION} (data.zip)"
    assert alarm["origin"] == "testgame:usr/share/games/testgame/data.zip!sounds/alarm1.wav"
    skipped = dict(next(r for r in result.sources if r.name == "testgame").skipped)
    assert "corrupt archive member" in skipped["usr/share/games/testgame/data.zip!sounds/corrupt.wav"]
    assert "usr/share/games/testgame/sfx/broken.wav" in skipped
    report = next(r for r in result.sources if r.name == "testgame")
    assert report.warnings == ["pattern 'usr/share/games/testgame/nothing/*' matches no audio file"]
    # Exact and near copies share one group; an unrelated sound keeps its own.
    beeps = {rows[f"{game}/sfx/{n}.wav"]["group"] for n in ("beep", "beep_copy", "beep_near")}
    assert beeps == {"testgame/usr/share/games/testgame/sfx/beep"}
    assert rows[f"{game}/sfx/hum.wav"]["group"] == "testgame/usr/share/games/testgame/sfx/hum"
    assert result.duplicates.exact_clusters == 2 and result.duplicates.near_clusters == 1
    # A copy across sources ties the data set's group to the package's, and its two labels are
    # sent to review.
    assert rows[f"{game}/sfx/whistle.wav"]["group"] == rows["audio/mini/audio/a.wav"]["group"] == "g1"
    assert result.duplicates.cross_source_clusters == 1 and len(result.duplicates.label_conflicts) == 1
    # The data set keeps its labels, groups, source and licence; its report-only audit is counted.
    mini = rows["audio/mini/audio/b.wav"]
    assert (mini["label"], mini["group"], mini["source"], mini["licence"]) == (
        "scream",
        "g2",
        "upstream:mini 1",
        "CC0-1.0",
    )
    review = (world["out"] / "review.tsv").read_text()
    assert "audio/mini/audio/b.wav" in review and "would make it non_scream" in review
    assert f"{game}/voices/death1.ogg\ttestgame\tteacher\texclude" in review
    assert f"{game}/sfx/whistle.wav\ttestgame\tnon_scream\tnon_scream" in review
    assert "copies disagree on the label" in review
    summary = (world["out"] / "summary.md").read_text()
    assert "Left out:" in summary and "testgame: usr/share/games/testgame/sfx/broken.wav:" in summary
    assert "| mini | 3 |" in summary and "| 0 | 0 | 0 | 0 | 1 | 0 |" in summary
    # The built folder is a data set `scream train` reads as it is.
    dataset = load_dataset(world["out"])
    assert len(dataset.clips) == len(rows) and not dataset.skipped
    assert (world["out"] / "provenance/testgame/copyright").read_text() == COPYRIGHT


def test_second_build_downloads_scores_and_writes_nothing(world: dict[str, Path]) -> None:
    run_build(world)
    downloads = world["apt_log"].read_text().count("download")
    stamps = {p: p.stat().st_mtime_ns for p in world["out"].rglob("*") if p.is_file()}
    teacher = StandInTeacher()
    again = run_build(world, teacher)
    assert world["apt_log"].read_text().count("download") == downloads == 1
    assert teacher.calls == 0
    assert (again.written, again.removed, again.manifest_changed) == (0, 0, False)
    assert all(r.materialised == 0 for r in again.sources)
    assert {p: p.stat().st_mtime_ns for p in world["out"].rglob("*") if p.is_file()} == stamps


def test_overrides_settle_labels_and_remove_what_is_excluded(world: dict[str, Path]) -> None:
    run_build(world)
    game = "audio/testgame/usr/share/games/testgame"
    (world["recipe"].parent / "overrides.tsv").write_text(
        "path\tlabel\treason\n"
        f"{game}/voices/death1.ogg\tscream\tlistened: a scream with a low fundamental\n"
        f"{game}/sfx/hum.wav\texclude\tmains hum, not a sound of the game\n"
    )
    result = run_build(world)
    rows = read_manifest(world["out"])
    assert rows[f"{game}/voices/death1.ogg"]["label"] == "scream"
    assert rows[f"{game}/voices/death1.ogg"]["decided_by"] == "override"
    assert f"{game}/sfx/hum.wav" not in rows and not (world["out"] / f"{game}/sfx/hum.wav").exists()
    assert result.removed == 1 and result.written == 1
    assert "listened: a scream" in (world["out"] / "review.tsv").read_text()


def test_bad_override_label_is_an_error_naming_the_line(world: dict[str, Path]) -> None:
    (world["recipe"].parent / "overrides.tsv").write_text("path\tlabel\treason\nx.wav\tmaybe\tunsure\n")
    with pytest.raises(RecipeError, match=r"overrides.tsv:2: label 'maybe'"):
        run_build(world)


def test_offline_build_names_the_missing_package_and_builds_the_rest(world: dict[str, Path]) -> None:
    result = run_build(world, offline=True)
    assert world["apt_log"].read_text() == ""
    [(name, why)] = result.problems
    assert name == "testgame" and "not in the cache" in why and "--offline" in why
    assert {r["path"].split("/")[1] for r in read_manifest(world["out"]).values()} == {"mini"}
    run_build(world)  # online: downloads
    offline = run_build(world, offline=True)
    assert not offline.problems and any("/testgame/" in p for p in read_manifest(world["out"]))


def test_a_version_no_longer_in_the_archive_is_named(world: dict[str, Path]) -> None:
    write_recipe(world["recipe"].parent, version="9.9-9")
    result = run_build(world)
    [(name, why)] = result.problems
    assert name == "testgame"
    assert f"{PACKAGE}=9.9-9: apt-get download failed (E: Version '9.9-9' for '{PACKAGE}' was not found)" in why
    assert len(read_manifest(world["out"])) == 3


def test_a_cut_off_download_fails_its_checksum(world: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    write_recipe(world["recipe"].parent, sha256=sha256_file(world["deb"]))
    monkeypatch.setenv("FAKE_APT_CUT", "1")
    result = run_build(world)
    [(_, why)] = result.problems
    assert "cut off or corrupt" in why
    assert not list((world["cache"] / "debs").glob("*.deb"))
    monkeypatch.delenv("FAKE_APT_CUT")
    assert not run_build(world).problems


def test_a_corrupt_cached_package_is_named_when_unpacking(world: dict[str, Path]) -> None:
    debs = world["cache"] / "debs"
    debs.mkdir(parents=True)
    (debs / world["deb"].name).write_bytes(world["deb"].read_bytes()[:3000])
    result = run_build(world)
    [(name, why)] = result.problems
    assert name == "testgame" and "dpkg -x failed, the package is corrupt" in why


def test_recipe_errors_name_the_key(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "x"\ncolour = "red"\n')
    with pytest.raises(RecipeError, match=r"unknown key\(s\) colour"):
        load_recipe(recipe)
    recipe.write_text('name = "x"\n[teacher]\nscream_at = 0.01\n')
    with pytest.raises(RecipeError, match="non_scream_below < scream_at"):
        load_recipe(recipe)
    recipe.write_text('name = "x"\n[teacher]\nnear_copy_margin = 0.1\n')
    with pytest.raises(RecipeError, match="near_copy_margin must be in"):
        load_recipe(recipe)
    recipe.write_text('name = "x"\nnear_copies = "pins.tsv"\n')
    assert load_recipe(recipe).near_copies_path == tmp_path / "pins.tsv"
    recipe.write_text(
        'name = "x"\n'
        '[[source]]\nname = "good"\npath = "data/a"\n'
        '[[source]]\nname = "typo"\npackage = "p"\nversion = "1"\nlicense = "GPL"\n'
        '  [[source.rule]]\n  match = "*"\n  label = "non_scream"\n  category = "sfx"\n'
        '[[source]]\nname = "badlabel"\npackage = "p"\nversion = "1"\n'
        '  [[source.rule]]\n  match = "*"\n  label = "screams"\n  category = "sfx"\n'
        '[[source]]\nname = "noversion"\npackage = "p"\n'
    )
    loaded = load_recipe(recipe)
    assert [s.name for s in loaded.sources] == ["good"]
    problems = dict(loaded.problems)
    assert "unknown key(s) license" in problems["typo"]
    assert "label: 'screams' is not one of" in problems["badlabel"]
    assert "needs its exact 'version'" in problems["noversion"]


def test_the_checked_in_recipe_loads_and_lists_only_allowed_packages() -> None:
    root = Path(__file__).resolve().parents[2]
    recipe = load_recipe(root / "train/corpus/recipe.toml")
    assert not recipe.problems
    packages = {s.package for s in recipe.sources if s.is_debian}
    allowed = root.parent / "shared" / "data" / "DEBIAN-SOURCES.md"
    if allowed.is_file():
        text = allowed.read_text()
        assert all(f"{s.package}={s.version}" in text or f"{s.package}," in text for s in recipe.sources if s.is_debian)
    assert all(len(s.sha256) == 64 for s in recipe.sources if s.is_debian)
    assert {"0ad-data", "ufoai-sound", "kajongg", "sound-theme-freedesktop"} <= packages


def test_audit_decisions() -> None:
    rules = TeacherRules()
    kw = {"rules": rules, "category": "scream_game", "non_scream_category": "vocal_effort", "on_disagreement": "keep"}
    assert audit.decide(named="teacher", score=0.3, audit="apply", **kw).label == "scream"  # type: ignore[arg-type]
    low = audit.decide(named="teacher", score=0.049, audit="apply", **kw)  # type: ignore[arg-type]
    assert (low.label, low.category) == ("non_scream", "vocal_effort")
    assert audit.decide(named="teacher", score=0.05, audit="apply", **kw).label == "exclude"  # type: ignore[arg-type]
    report = audit.decide(named="teacher", score=0.01, audit="report", prior="scream", **kw)  # type: ignore[arg-type]
    assert (report.label, report.would) == ("scream", "non_scream")
    kept = audit.decide(named="scream", score=0.01, audit="apply", **kw)  # type: ignore[arg-type]
    assert (kept.label, kept.decided_by) == ("scream", "name (teacher disagrees)") and kept.review
    kw["on_disagreement"] = "exclude"
    assert audit.decide(named="non_scream", score=0.9, audit="apply", **kw).label == "exclude"  # type: ignore[arg-type]
    assert audit.decide(named="non_scream", score=0.29, audit="apply", **kw).label == "non_scream"  # type: ignore[arg-type]


def test_duplicates_merge_whole_groups_and_report_conflicts() -> None:
    e = np.eye(4, dtype=np.float32)
    near = (e[0] + 0.01 * e[1]) / np.linalg.norm(e[0] + 0.01 * e[1])
    groups, report = audit.duplicate_groups(
        sha1s=["a", "a", "b", "c", "d"],
        embeddings=np.stack([e[0], e[0], near, e[2], e[3]]),
        durations_s=[1.0, 1.0, 1.05, 1.0, 1.0],
        groups=["s1/x", "s2/y", "s3/z", "s1/x", "s4/w"],
        sources=["s1", "s2", "s3", "s1", "s4"],
        labels=["scream", "scream", "non_scream", "scream", "non_scream"],
        rules=TeacherRules(near_duplicate_cosine=0.99),
    )
    # a's copies tie s1/x, s2/y and (near) s3/z together; c is in s1/x, so it follows its group.
    assert groups == ["s1/x", "s1/x", "s1/x", "s1/x", "s4/w"]
    assert (report.exact_clusters, report.near_clusters, report.groups_merged) == (1, 1, 2)
    assert report.cross_source_clusters == 2 and len(report.label_conflicts) == 1
    _, longer = audit.duplicate_groups(
        sha1s=["a", "b"],
        embeddings=np.stack([e[0], e[0]]),
        durations_s=[1.0, 1.2],
        groups=["g1", "g2"],
        sources=["s", "s"],
        labels=["non_scream", "non_scream"],
        rules=TeacherRules(),
    )
    assert longer.near_clusters == 0  # same sound, but 20% longer: not a copy


def _at(cosine: float, a: int, b: int) -> np.ndarray:
    """A unit vector at `cosine` to basis vector a, turned towards basis vector b."""
    e = np.eye(8, dtype=np.float64)
    return (cosine * e[a] + np.sqrt(1 - cosine**2) * e[b]).astype(np.float32)


def _groups_on(
    embeddings: list[np.ndarray], pinned: frozenset[tuple[str, str]] | None
) -> tuple[list[str], audit.DuplicateReport]:
    n = len(embeddings)
    return audit.duplicate_groups(
        sha1s=[f"h{i}" for i in range(n)],
        embeddings=np.stack(embeddings),
        durations_s=[1.0] * n,
        groups=[f"g{i}" for i in range(n)],
        sources=["s"] * n,
        labels=["non_scream"] * n,
        rules=TeacherRules(near_duplicate_cosine=0.995),
        paths=[f"p{i}" for i in range(n)],
        pinned=pinned,
    )


def test_pinned_near_copies_give_every_machine_the_same_groups() -> None:
    """Two machines whose teacher embeddings put two pairs on opposite sides of the threshold (by
    less than the margin) deal different groups unpinned, and the same groups with the same pins; a
    clear copy is tied either way, a pin far below the threshold is tied and reported."""
    e = np.eye(8, dtype=np.float32)
    # p0-p1 and p2-p3 sit within 0.001 of the 0.995 threshold, p4-p5 is a clear copy (0.999).
    machine_a = [e[0], _at(0.9953, 0, 6), e[2], _at(0.9947, 2, 6), e[4], _at(0.999, 4, 7)]
    machine_b = [e[0], _at(0.9948, 0, 6), e[2], _at(0.9952, 2, 6), e[4], _at(0.999, 4, 7)]
    a_free, _ = _groups_on(machine_a, None)
    b_free, _ = _groups_on(machine_b, None)
    assert a_free == ["g0", "g0", "g2", "g3", "g4", "g4"] and b_free == ["g0", "g1", "g2", "g2", "g4", "g4"]
    pins = frozenset({("p0", "p1")})  # what machine A's reference build tied within the margin
    a_pinned, a_report = _groups_on(machine_a, pins)
    b_pinned, b_report = _groups_on(machine_b, pins)
    assert a_pinned == b_pinned == ["g0", "g0", "g2", "g3", "g4", "g4"]
    # Both report the unpinned pair within the margin, whichever side of the threshold it fell.
    assert (
        [p[:2] for p in a_report.unpinned_borderline] == [p[:2] for p in b_report.unpinned_borderline] == [("p2", "p3")]
    )
    assert {p[:2] for p in b_report.near_pairs} == {("p0", "p1"), ("p4", "p5")}
    assert b_report.near_pairs[-1][2] == pytest.approx(0.9948, abs=1e-5)  # the pin's cosine on this machine
    assert not b_report.pins_below and b_report.pins_unused == 0
    far, report = _groups_on(machine_b, frozenset({("p0", "p2"), ("p1", "p9")}))
    assert far[2] == "g0" and [p[:2] for p in report.pins_below] == [("p0", "p2")] and report.pins_unused == 1
    with pytest.raises(ValueError, match="paths"):
        audit.duplicate_groups(
            sha1s=["a"],
            embeddings=np.stack([e[0]]),
            durations_s=[1.0],
            groups=["g"],
            sources=["s"],
            labels=["scream"],
            rules=TeacherRules(),
            pinned=frozenset(),
        )


def test_near_copies_files_round_trip_and_bad_rows_are_named(tmp_path: Path) -> None:
    path = tmp_path / "near-copies.tsv"
    path.write_text(near_copies_tsv([("b.wav", "c.wav", 0.99612), ("a.wav", "b.wav", 0.995)]))
    assert path.read_text().splitlines() == [
        "path_a\tpath_b\tcosine",
        "a.wav\tb.wav\t0.995000",
        "b.wav\tc.wav\t0.996120",
    ]
    assert audit.read_near_copies(path) == {("a.wav", "b.wav"), ("b.wav", "c.wav")}
    path.write_text("# pinned\npath_a\tpath_b\tcosine\nz.wav\ty.wav\t0.99\nx.wav\t\t0.99\n")
    with pytest.raises(RecipeError, match=r"near-copies.tsv:3: a near-copy needs two different paths"):
        audit.read_near_copies(path)
    with pytest.raises(RecipeError, match="not found"):
        audit.read_near_copies(tmp_path / "missing.tsv")
    assert audit.read_near_copies(None) is None


def test_a_build_pins_its_near_copies_from_the_file_it_wrote(world: dict[str, Path]) -> None:
    """DATA/near-copies.tsv lists what the build tied; named as the recipe's near_copies, the next
    build ties exactly those and says so; a pin file that is missing stops the build before any work."""
    first = run_build(world)
    written = (world["out"] / "near-copies.tsv").read_text().splitlines()
    game = "audio/testgame/usr/share/games/testgame"
    # beep and beep_copy are exact copies (one sha1), so each is a near-copy of beep_near.
    assert written[0] == "path_a\tpath_b\tcosine" and len(written) == 3
    assert [row.split("\t")[:2] for row in written[1:]] == [
        [f"{game}/sfx/beep.wav", f"{game}/sfx/beep_near.wav"],
        [f"{game}/sfx/beep_copy.wav", f"{game}/sfx/beep_near.wav"],
    ]
    groups = {p: r["group"] for p, r in read_manifest(world["out"]).items()}
    pins = world["recipe"].parent / "near-copies.tsv"
    pins.write_text("\n".join([*written, "audio/gone.wav\taudio/also-gone.wav\t0.999"]) + "\n")
    write_recipe(world["recipe"].parent, near_copies="near-copies.tsv")
    again = run_build(world)
    assert {p: r["group"] for p, r in read_manifest(world["out"]).items()} == groups
    assert again.duplicates.near_clusters == first.duplicates.near_clusters == 1 and again.duplicates.pins_unused == 1
    assert "Near-copies pinned by `near-copies.tsv`" in (world["out"] / "summary.md").read_text()
    assert "1 pins name clips this build does not hold" in (world["out"] / "summary.md").read_text()
    pins.unlink()
    with pytest.raises(RecipeError, match=r"near-copies file .* not found"):
        run_build(world)


def test_licence_lookup_follows_dep5() -> None:
    stanzas = [
        debian.CopyrightStanza(("*",), "GPL-2+"),
        debian.CopyrightStanza(("sound/voices/*",), "CC-BY-SA-3.0"),
    ]
    assert debian.licence_for(stanzas, "usr/share/game/sound/voices/a.ogg", "x") == "CC-BY-SA-3.0 (debian/copyright)"
    assert debian.licence_for(stanzas, "usr/share/game/music/a.ogg", "x") == "GPL-2+ (debian/copyright)"
    assert debian.licence_for([], "a.ogg", "LGPL") == "LGPL (recipe)"


def test_teacher_windows_cover_the_clip() -> None:
    assert clip_windows(np.zeros(100, dtype=np.float32)).shape == (1, 15600)
    windows = clip_windows(np.arange(15600 + 7680 + 1, dtype=np.float32))
    assert windows.shape == (3, 15600) and windows[1, 0] == 7680 and windows[2, 0] == 2 * 7680


@pytest.mark.skipif(not (SHARED_YAMNET / "yamnet.tflite").is_file(), reason="../shared/models/yamnet absent")
def test_yamnet_teacher_scores_synthetic_audio() -> None:
    teacher = YamnetTeacher(SHARED_YAMNET)
    assert len(teacher.class_names) == 521 and teacher.class_names[11] == "Screaming"
    silence = teacher.analyse(np.zeros(RATE * 2, dtype=np.float32))
    siren = teacher.analyse(
        (
            0.5 * np.sin(2 * np.pi * np.cumsum(700 + 500 * np.sin(2 * np.pi * 0.5 * np.arange(RATE * 3) / RATE)) / RATE)
        ).astype(np.float32)
    )
    for scores in (silence, siren):
        assert scores.max_scores.shape == (521,) and np.all((scores.max_scores >= 0) & (scores.max_scores <= 1))
        assert np.all(scores.max_scores >= scores.mean_scores - 1e-6)
        assert abs(float(np.linalg.norm(scores.embedding)) - 1) < 1e-4
    assert silence.top(teacher.class_names, 1)[0][0] == "Silence"
    assert silence.max_scores[11] < 0.05
    assert float(silence.embedding @ siren.embedding) < 0.9


@pytest.mark.skipif(not (SHARED_YAMNET / "yamnet.tflite").is_file(), reason="../shared/models/yamnet absent")
def test_cli_build_with_the_real_teacher(world: dict[str, Path], tmp_path: Path) -> None:
    shutil.copytree(SHARED_YAMNET, world["shared"] / "models" / "yamnet")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge",
            "corpus",
            "build",
            "--recipe",
            str(world["recipe"]),
            "--out",
            str(world["out"]),
            "--shared",
            str(world["shared"]),
            "--cache",
            str(world["cache"]),
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert out.returncode == 1, out.stderr  # the broken file and the corrupt member were skipped
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert {s["path"] for s in summary["skipped"]} == {
        "usr/share/games/testgame/sfx/broken.wav",
        "usr/share/games/testgame/data.zip!sounds/corrupt.wav",
    }
    assert "skipped usr/share/games/testgame/sfx/broken.wav" in out.stderr
    rows = read_manifest(world["out"])
    assert summary["clips"] == len(rows) >= 10
    for row in rows.values():
        assert 0 <= float(row["teacher_scream"]) <= 1 and row["teacher_top"].count(";") == 2


def test_splitting_by_source_keeps_each_source_on_one_side(tmp_path: Path) -> None:
    from train.data import DataError, regroup
    from train.splits import split_by_group

    folder = tmp_path / "set"
    (folder / "audio").mkdir(parents=True)
    lines = ["path\tlabel\tgroup\tsource"]
    for k in range(48):
        label = "scream" if k % 12 < 4 else "non_scream"
        write_wav(folder / "audio" / f"{k}.wav", tone(300 + 40 * k, 0.3), RATE)
        lines.append(f"audio/{k}.wav\t{label}\tg{k}\tsource{k % 12}")
    (folder / "manifest.tsv").write_text("\n".join(lines) + "\n")
    dataset = load_dataset(folder)
    assert regroup(dataset, "group") is dataset
    by_source = regroup(dataset, "source")
    splits = split_by_group(by_source.clips, seed=1)
    sides = {c.source: {name for name, part in splits.items() if c in part} for c in by_source.clips}
    assert all(len(s) == 1 for s in sides.values()) and len(sides) == 12
    with pytest.raises(DataError, match="split_by must be one of group, source"):
        regroup(dataset, "speaker")
    (folder / "manifest.tsv").write_text("\n".join(ln.rsplit("\t", 1)[0] for ln in lines) + "\n")
    with pytest.raises(DataError, match="needs a 'source' column: 48 clips have none"):
        regroup(load_dataset(folder), "source")
