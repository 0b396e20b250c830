"""`scream deploy pull HOST --out DIR`: a site's labelled clips onto the desk machine, as training data.

Over the same OpenSSH path as `push` (keys only, strict host keys). On the device `scream labels
list` names the clips labelled *scream* or *not a scream* in `scream review` (with each file's
sha256); they come over as one tar stream, each is checked against its sha256, written under
DIR/audio/<site>/<day>/, and DIR/manifest.tsv gains a row per clip in the corpus manifest format
(`scream train --data DIR` and `scream adapt --site DIR` read it): group per site and day, source
`site:<site>`. Only then does `scream labels mark-exported` tell the device, whose retention may
then delete them again. A clip that fails its check is left marked as not exported, so the next
pull tries again; nothing is written for a host that cannot be reached.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shlex
import tarfile
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

from deploy.remote import DeployError, Device, Outcome, Target, _progress
from edge.labels import LABELS, check_clip_name

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
    "origin",
    "note",
    "labelled",
)
LICENCE = "recorded at the site (the site owner's; not for redistribution)"


def _safe(text: str) -> str:
    """A folder name from a site name: letters, digits, '-', '_' and '.' only."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-.")
    return cleaned or "site"


def read_manifest(path: Path) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["path"]: row for row in csv.DictReader(handle, delimiter="\t") if row.get("path")}


def write_manifest(path: Path, rows: dict[str, dict[str, str]]) -> None:
    """The whole manifest through a temporary file and os.replace (a reader never sees half of it)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, MANIFEST_COLUMNS, delimiter="\t", lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for key in sorted(rows):
        writer.writerow(rows[key])
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(out.getvalue())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _wav_facts(data: bytes) -> tuple[float, int, int]:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() / w.getframerate(), w.getframerate(), w.getnchannels()


def pull(target: Target, out: Path, *, config: str | None = None) -> Outcome:
    """Fetch one device's labelled clips into `out`; returns what happened (never raises)."""
    started = time.monotonic()
    outcome = Outcome(host=target.host, action="pull")
    device = Device(target)
    remote_config = shlex.quote(config or target.config)
    scream = shlex.quote(target.remote_scream)
    try:
        _progress(target.host, "list labelled clips")
        text = device.run(f"{scream} labels list --config {remote_config}", step="list labelled clips")
        try:
            listing: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DeployError(
                f"list labelled clips: 'scream labels list' gave no JSON ({text.strip()[:200]!r})"
            ) from exc
        site, clips_dir = str(listing.get("site", "")), str(listing["clips_dir"])
        wanted = [e for e in listing["labelled"] if LABELS.get(e["label"]) and e["exists"]]
        manifest_path = out / "manifest.tsv"
        out.mkdir(parents=True, exist_ok=True)
        rows = read_manifest(manifest_path)
        here = {row.get("origin", "") for row in rows.values()}
        # New labels, and clips marked fetched that this folder does not hold (pulled into another).
        fresh = [e for e in wanted if not e["exported"] or f"{listing['device']}:{clips_dir}/{e['clip']}" not in here]
        if not fresh:
            outcome.ok, outcome.detail = True, f"nothing new: {len(wanted)} labelled clip(s), all fetched before"
            return outcome
        names = [check_clip_name(e["clip"]) for e in fresh]
        _progress(target.host, f"fetch {len(names)} clip(s)")
        archive = device.output(
            f"tar -C {shlex.quote(clips_dir)} -cf - -- {' '.join(shlex.quote(n) for n in names)}",
            step="fetch clips",
            timeout_s=600,
        )
        fetched: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name in names:
                    handle = tar.extractfile(member)
                    if handle is not None:
                        fetched[member.name] = handle.read()
        done, bad, screams = [], [], 0
        for entry in fresh:
            name = entry["clip"]
            data = fetched.get(name)
            if data is None or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                bad.append(name)
                continue
            day = entry["day"] or "unknown-day"
            rel = f"audio/{_safe(site)}/{day}/{name}"
            target_path = out / rel
            target_path.parent.mkdir(parents=True, exist_ok=True)
            part = target_path.with_suffix(".wav.part")
            part.write_bytes(data)
            part.replace(target_path)
            duration, rate, channels = _wav_facts(data)
            rows[rel] = {
                "path": rel,
                "label": str(LABELS[entry["label"]]),
                # A candidate the device's verifier vetoed ([clips] keep_vetoed): a miss of the second
                # stage if labelled scream, a hard negative it already catches if not.
                "category": f"site_{'vetoed_' if entry.get('vetoed') else ''}{LABELS[entry['label']]}",
                "group": f"site:{site}/{day}",
                "source": f"site:{site}",
                "licence": LICENCE,
                "duration_s": f"{duration:.3f}",
                "sample_rate": str(rate),
                "channels": str(channels),
                "sha1": hashlib.sha1(data).hexdigest(),
                "origin": f"{listing['device']}:{clips_dir}/{name}",
                "note": entry.get("note", ""),
                "labelled": entry.get("labelled", ""),
            }
            done.append(name)
            screams += entry["label"] == "scream"
        write_manifest(manifest_path, rows)
        if done:
            _progress(target.host, f"mark {len(done)} clip(s) fetched")
            device.run(
                f"{scream} labels mark-exported {' '.join(shlex.quote(n) for n in done)} --config {remote_config}",
                step="mark fetched",
            )
        outcome.detail = (
            f"{len(done)} clip(s) ({screams} scream, {len(done) - screams} not a scream) into {manifest_path}"
            + (f"; {len(bad)} failed their sha256 check and stay on the device: {', '.join(bad)}" if bad else "")
        )
        outcome.ok = not bad
    except (DeployError, OSError, KeyError, tarfile.TarError, wave.Error) as exc:
        outcome.detail = str(exc) if isinstance(exc, DeployError) else f"{type(exc).__name__}: {exc}"
    finally:
        outcome.seconds = time.monotonic() - started
    return outcome
