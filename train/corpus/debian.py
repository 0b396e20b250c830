"""Debian packages as corpus sources: download once (`apt-get download PKG=VERSION`), check, unpack
(`dpkg -x`), and read each file's licence from the package's machine-readable `debian/copyright`."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edge.classifier import sha256_file
from train.corpus.recipe import SourceError


class PackageError(SourceError):
    """A package that cannot be had or unpacked; the message names it and says why."""


def deb_file_name(package: str, version: str) -> str:
    """The name `apt-get download` gives an architecture-independent or host .deb (':' as '%3a')."""
    return f"{package}_{version.replace(':', '%3a')}_"


def cached_deb(debs: Path, package: str, version: str) -> Path | None:
    prefix = deb_file_name(package, version)
    found = sorted(p for p in debs.glob(prefix + "*.deb") if p.is_file())
    return found[0] if found else None


def fetch(package: str, version: str, debs: Path, *, sha256: str = "", offline: bool = False) -> Path:
    """The package's .deb from the cache, downloading it when missing (or when the cached copy fails
    its checksum, once). Raises `PackageError` naming the package."""
    debs.mkdir(parents=True, exist_ok=True)
    spec = f"{package}={version}"
    deb = cached_deb(debs, package, version)
    if deb is not None and sha256 and sha256_file(deb) != sha256:
        if offline:
            raise PackageError(
                f"{spec}: the cached {deb.name} fails its sha256 (cut off or corrupt); run without --offline"
            )
        deb.unlink()
        deb = None
    if deb is not None:
        return deb
    if offline:
        raise PackageError(f"{spec}: not in the cache {debs} (--offline: nothing is downloaded)")
    if shutil.which("apt-get") is None:
        raise PackageError(f"{spec}: apt-get is not on PATH, so the package cannot be downloaded")
    partial = debs / "partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    result = subprocess.run(["apt-get", "download", spec], cwd=partial, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()
        lines = [ln for ln in output if ln.startswith("E:")] or output[-1:]
        raise PackageError(f"{spec}: apt-get download failed ({'; '.join(lines) or f'exit {result.returncode}'})")
    got = sorted(partial.glob("*.deb"))
    if not got:
        raise PackageError(f"{spec}: apt-get download succeeded but left no .deb")
    if sha256 and (actual := sha256_file(got[0])) != sha256:
        shutil.rmtree(partial, ignore_errors=True)
        raise PackageError(f"{spec}: the download is cut off or corrupt (sha256 {actual[:12]}…, recipe {sha256[:12]}…)")
    final = debs / got[0].name
    got[0].replace(final)
    shutil.rmtree(partial, ignore_errors=True)
    return final


def unpack(deb: Path, into: Path) -> Path:
    """`dpkg -x` the package into `into` once; a marker file says the unpack finished."""
    marker = into / ".unpacked"
    if marker.exists() and marker.read_text() == deb.name:
        return into
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    result = subprocess.run(["dpkg", "-x", str(deb), str(into)], capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(into, ignore_errors=True)
        message = (result.stderr or "").strip().splitlines()
        raise PackageError(
            f"{deb.name}: dpkg -x failed, the package is corrupt ({message[-1] if message else 'no output'})"
        )
    marker.write_text(deb.name)
    return into


@dataclass(frozen=True)
class CopyrightStanza:
    patterns: tuple[str, ...]
    licence: str


def read_copyright(path: Path) -> list[CopyrightStanza]:
    """The `Files:` stanzas of a DEP-5 copyright file (empty when it is not machine-readable)."""
    if not path.is_file():
        return []
    stanzas, fields, key = [], {}, ""
    for line in [*path.read_text(encoding="utf-8", errors="replace").splitlines(), ""]:
        if not line.strip():
            if "files" in fields and "license" in fields:
                licence = fields["license"].strip().splitlines()[0].strip()
                stanzas.append(CopyrightStanza(tuple(fields["files"].split()), licence))
            fields, key = {}, ""
        elif line[0] in " \t":
            if key:
                fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
    return stanzas


def licence_for(stanzas: list[CopyrightStanza], path: str, fallback: str) -> str:
    """The licence of the last stanza whose pattern matches the installed path (DEP-5: last match
    wins); upstream paths are matched against the installed path's tail."""
    found = ""
    for stanza in stanzas:
        for pattern in stanza.patterns:
            if pattern == "*" or fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, "*/" + pattern):
                found = stanza.licence
    if found:
        return f"{found} (debian/copyright)"
    return f"{fallback} (recipe)" if fallback else "unknown (no debian/copyright stanza)"
