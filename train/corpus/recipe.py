"""The corpus recipe: every source of training audio, with its version and label rules, in one TOML file.

A recipe names data sets (folders with a manifest, such as ../shared/data/scream-corpus-v1) and
Debian packages at exact versions; each package has rules that map file paths (globs, `!` entering
an inner zip archive) to a label, a category and a grouping. Unknown keys and bad values are
errors naming the key; a source with a bad entry is reported and left out while the rest build.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import ScreamError

LABEL_RULES = ("scream", "non_scream", "teacher", "exclude")
GROUPINGS = ("file", "stem", "folder")
AUDITS = ("apply", "report")
DISAGREEMENT = ("keep", "exclude")


class RecipeError(ScreamError, ValueError):
    """A recipe (or one source of it) that cannot be used; the message names the key."""


class SourceError(ScreamError, RuntimeError):
    """A source listed in the recipe that cannot be read (a data set or a package); the message says why."""


@dataclass(frozen=True, kw_only=True)
class TeacherRules:
    """How the teacher's scores decide labels and find near-duplicates."""

    model: str = "models/yamnet"  # folder under --shared with yamnet.tflite and its class map
    scream_class: str = "Screaming"
    scream_at: float = 0.3  # a teacher-decided clip is a scream when its peak score reaches this
    non_scream_below: float = 0.05  # ... and not a scream below this; in between it is left out
    near_duplicate_cosine: float = 0.98  # mean-embedding cosine at or above which clips are one sound
    near_duplicate_length: float = 0.10  # ... when their lengths differ by at most this share
    # With pinned near-copies (the recipe's `near_copies`): pairs within this of the threshold are
    # copies only when pinned (the teacher's float embeddings differ this little between CPUs).
    near_copy_margin: float = 0.001

    def check(self) -> None:
        if not 0 < self.non_scream_below < self.scream_at < 1:
            raise RecipeError(
                f"teacher: need 0 < non_scream_below < scream_at < 1, got {self.non_scream_below} and {self.scream_at}"
            )
        if not 0 < self.near_duplicate_cosine <= 1:
            raise RecipeError(f"teacher.near_duplicate_cosine must be in (0, 1], got {self.near_duplicate_cosine}")
        if not 0 <= self.near_duplicate_length < 1:
            raise RecipeError(f"teacher.near_duplicate_length must be in [0, 1), got {self.near_duplicate_length}")
        if not 0 <= self.near_copy_margin < 0.05:
            raise RecipeError(f"teacher.near_copy_margin must be in [0, 0.05), got {self.near_copy_margin}")


@dataclass(frozen=True, kw_only=True)
class Rule:
    """Files whose path matches `match` (a glob; `ARCHIVE!MEMBER-GLOB` for members of a zip)."""

    match: str
    label: str  # one of LABEL_RULES; "teacher": the teacher decides (ambiguous families)
    category: str = ""
    non_scream_category: str = ""  # category when the teacher says non_scream (default: category)
    group: str = "stem"  # file: one group per file; stem: trailing digits stripped; folder: per folder
    max_excerpts: int = 0  # for long files: at most this many 30 s excerpts, spread evenly (0: all)

    @property
    def archive(self) -> str:
        return self.match.split("!", 1)[0] if "!" in self.match else ""

    @property
    def member(self) -> str:
        return self.match.split("!", 1)[1] if "!" in self.match else self.match


@dataclass(frozen=True, kw_only=True)
class Source:
    """One source: a data set (`path` under --shared) or a Debian package (`package`, `version`)."""

    name: str
    path: str = ""
    package: str = ""
    version: str = ""
    sha256: str = ""  # of the .deb, checked after every download and before every unpack
    licence: str = ""  # when debian/copyright does not say (or a data set's manifest has none)
    audit: str = "apply"  # apply: teacher decisions change labels; report: they are only counted
    on_disagreement: str = "keep"  # a named label the teacher contradicts: keep it (listed) or leave it out
    teacher_decides: tuple[str, ...] = ()  # data sets: categories whose label the teacher decides
    rules: tuple[Rule, ...] = ()

    @property
    def is_debian(self) -> bool:
        return bool(self.package)

    @property
    def label(self) -> str:
        """How the manifest's `source` column names it."""
        return f"debian:{self.package} {self.version}" if self.is_debian else self.name


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str
    path: Path
    excerpt_max_s: float = 30.0
    overrides: str = ""  # TSV beside the recipe: path, label (scream | non_scream | exclude), reason
    near_copies: str = ""  # TSV beside the recipe: the near-copies a reference build tied (path_a, path_b, cosine)
    teacher: TeacherRules = field(default_factory=TeacherRules)
    sources: tuple[Source, ...] = ()
    problems: tuple[tuple[str, str], ...] = ()  # (source name, why it was left out)

    @property
    def overrides_path(self) -> Path | None:
        return (self.path.parent / self.overrides) if self.overrides else None

    @property
    def near_copies_path(self) -> Path | None:
        return (self.path.parent / self.near_copies) if self.near_copies else None


def _take(table: dict[str, Any], allowed: dict[str, type | tuple[type, ...]], where: str) -> dict[str, Any]:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    for key, value in table.items():
        kinds = allowed[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            wanted = kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
            raise RecipeError(f"{where}.{key}: expected {wanted}, got {value!r}")
    return dict(table)


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: expected a table")
    table = _take(
        raw,
        {
            "match": str,
            "label": str,
            "category": str,
            "non_scream_category": str,
            "group": str,
            "max_excerpts": int,
        },
        where,
    )
    for key in ("match", "label"):
        if not table.get(key):
            raise RecipeError(f"{where}: '{key}' is required")
    if table["label"] not in LABEL_RULES:
        raise RecipeError(f"{where}.label: {table['label']!r} is not one of {', '.join(LABEL_RULES)}")
    if table.get("group", "stem") not in GROUPINGS:
        raise RecipeError(f"{where}.group: {table['group']!r} is not one of {', '.join(GROUPINGS)}")
    if table.get("max_excerpts", 0) < 0:
        raise RecipeError(f"{where}.max_excerpts: must be 0 (all) or more, got {table['max_excerpts']}")
    if table["label"] != "exclude" and not table.get("category"):
        raise RecipeError(f"{where}: 'category' is required for label {table['label']!r}")
    return Rule(**table)


def _source(raw: Any, where: str) -> Source:
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: expected a table")
    table = _take(
        raw,
        {
            "name": str,
            "path": str,
            "package": str,
            "version": str,
            "sha256": str,
            "licence": str,
            "audit": str,
            "on_disagreement": str,
            "teacher_decides": list,
            "rule": list,
        },
        where,
    )
    name = table.get("name", "")
    if not name:
        raise RecipeError(f"{where}: 'name' is required")
    where = f"source {name!r}"
    if bool(table.get("path")) == bool(table.get("package")):
        raise RecipeError(f"{where}: give either 'path' (a data set) or 'package' and 'version' (Debian)")
    if table.get("package") and not table.get("version"):
        raise RecipeError(f"{where}: a Debian package needs its exact 'version'")
    if table.get("audit", "apply") not in AUDITS:
        raise RecipeError(f"{where}.audit: {table['audit']!r} is not one of {', '.join(AUDITS)}")
    if table.get("on_disagreement", "keep") not in DISAGREEMENT:
        raise RecipeError(f"{where}.on_disagreement: {table['on_disagreement']!r} is not one of keep, exclude")
    rules = tuple(_rule(r, f"{where} rule {k + 1}") for k, r in enumerate(table.pop("rule", [])))
    if table.get("package") and not rules:
        raise RecipeError(f"{where}: a Debian package needs at least one [[source.rule]]")
    decides = table.pop("teacher_decides", [])
    if not all(isinstance(c, str) for c in decides):
        raise RecipeError(f"{where}.teacher_decides: expected a list of category names")
    return Source(**table, teacher_decides=tuple(decides), rules=rules)


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe. A source with a bad entry is left out and named in `problems`."""
    recipe_path = Path(path)
    try:
        raw = tomllib.loads(recipe_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RecipeError(f"{recipe_path}: no such recipe file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{recipe_path}: not valid TOML ({exc})") from exc
    top = _take(
        raw,
        {
            "name": str,
            "excerpt_max_s": (int, float),
            "overrides": str,
            "near_copies": str,
            "teacher": dict,
            "source": list,
        },
        str(recipe_path),
    )
    if not top.get("name"):
        raise RecipeError(f"{recipe_path}: 'name' is required")
    teacher_table = _take(
        top.get("teacher", {}),
        {
            "model": str,
            "scream_class": str,
            "scream_at": (int, float),
            "non_scream_below": (int, float),
            "near_duplicate_cosine": (int, float),
            "near_duplicate_length": (int, float),
            "near_copy_margin": (int, float),
        },
        "teacher",
    )
    teacher = TeacherRules(**teacher_table)
    teacher.check()
    excerpt_max_s = float(top.get("excerpt_max_s", 30.0))
    if not 1.0 <= excerpt_max_s <= 600.0:
        raise RecipeError(f"excerpt_max_s must be within 1-600 s, got {excerpt_max_s}")
    sources, problems, names = [], [], set()
    for number, entry in enumerate(top.get("source", []), start=1):
        label = entry.get("name", f"#{number}") if isinstance(entry, dict) else f"#{number}"
        try:
            source = _source(entry, f"source #{number}")
            if source.name in names:
                raise RecipeError(f"source {source.name!r}: the name is used twice")
        except RecipeError as exc:
            problems.append((str(label), str(exc)))
            continue
        names.add(source.name)
        sources.append(source)
    return Recipe(
        name=top["name"],
        path=recipe_path,
        excerpt_max_s=excerpt_max_s,
        overrides=top.get("overrides", ""),
        near_copies=top.get("near_copies", ""),
        teacher=teacher,
        sources=tuple(sources),
        problems=tuple(problems),
    )
