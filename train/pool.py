"""`scream crossval-pool`: one recipe's cross-validations at several training seeds, each against the
baseline recipe's at its own seed, pooled into one paired headline with the seed spread beside it.

A training seed alone moves the leave-source-out scene headline as much as the recipe changes tried
(models/scream-v5-crossval/by-source-balanced-e15-audit05-s1/: +0.095 recall at <= 5 false alarms/h
with the recipe unchanged), and one run's interval resamples scream sources, not training. So a
change is screened at two or more seeds: `scream crossval --seed S --split-seed 0 --baseline
BASELINE_AT_S` for each S, then this command pools the runs' fold scene curves. Every run deals the
same folds (one split seed), so a source's screams appear once per seed and the interval resamples
each source across all seeds at once; the recipe's own spread over seeds is reported beside it, and a
difference counts as resolved only when the pooled interval excludes 0 and every seed agrees in sign.

A run is paired with the `--against` run of the baseline recipe at its training seed (a crossval
at that seed builds the same scenes, so its own fold curves pair), or else with its own --baseline.

Reads each run's report.json and its fold-K-report/report.json (the scene curves); trains and scores
nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train.crossval import recipe_fields
from train.data import DataError
from train.scenes import FALSE_ALARM_BUDGETS, audited_headline, curve_headline, paired_headline

# What every pooled run must share: the same data dealt into the same folds and scenes built alike.
_SHARED = ("data", "folds", "split_by", "split_seed", "scenes_per_fold", "level_spread_db", "hop_ms")
# Recipe fields that may differ between the pooled runs (the seeds) or name one fold model.
_PER_RUN = ("seed", "split_seed", "fold")
RECALL_KEYS = tuple(f"recall_at_{b:g}_fa_per_hour" for b in FALSE_ALARM_BUDGETS)


@dataclass(frozen=True)
class Run:
    """One crossval's --out as the pool reads it."""

    path: Path
    report: dict[str, Any]
    curves: list[dict[str, Any]]
    baseline_curves: list[dict[str, Any]] | None

    @property
    def seed(self) -> int:
        return int(self.report["recipe"]["seed"])

    @property
    def baseline_recipe(self) -> dict[str, Any] | None:
        """The baseline's recipe: this run's with the differences its report lists put back."""
        base = self.report.get("baseline")
        if not base:
            return None
        recipe = dict(self.report["recipe"])
        recipe.update({key: theirs for key, (_, theirs) in base["recipe_differences"].items()})
        return recipe


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing ({what})") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({what}): {exc}") from None
    if not isinstance(loaded, dict):
        raise DataError(f"{path}: not a report ({what})")
    return loaded


def load_run(path: str | os.PathLike[str]) -> Run:
    """A finished crossval's report and its folds' scene curves (the baseline's too, if it had one)."""
    folder = Path(path)
    report = _read_json(folder / "report.json", "a finished `scream crossval --out`")
    missing = [key for key in (*_SHARED, "recipe") if key not in report]
    if missing:
        raise DataError(f"{folder}: report.json lacks {', '.join(missing)} (written by an older scream crossval?)")
    # A run written before a recipe field existed was trained with that field's default, as crossval
    # reads its fold models' sidecars.
    report["recipe"] = recipe_fields(report["recipe"])
    curves, baseline_curves = [], []
    for k in range(int(report["folds"])):
        fold = _read_json(folder / f"fold-{k}-report" / "report.json", f"fold {k}'s evaluation")
        if "scene_curve" not in fold:
            raise DataError(f"{folder}: fold {k}'s report has no scene curve (written by an older scream evaluate?)")
        curves.append(fold["scene_curve"])
        base = fold.get("baseline") or {}
        if report.get("baseline"):
            if "scene_curve" not in base:
                raise DataError(f"{folder}: fold {k}'s report has no baseline scene curve")
            baseline_curves.append(base["scene_curve"])
    return Run(folder, report, curves, baseline_curves if report.get("baseline") else None)


def _without(recipe: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in recipe.items() if k not in keys}


@dataclass(frozen=True)
class Side:
    """The baseline a run is paired with: its --baseline as the run scored it, or another run of the
    baseline recipe at the same seed (`--against`), whose own curves are on the same scenes."""

    path: str
    recipe: dict[str, Any]
    curves: list[dict[str, Any]]
    secondary: dict[str, Any]  # clips / windows paired rows, where the run scored the baseline itself


def baseline_side(run: Run, against: list[Run]) -> Side | None:
    """The --against run at this run's training seed, else the run's own --baseline, else None."""
    same_seed = [a for a in against if a.seed == run.seed]
    if same_seed:
        other = same_seed[0]
        if other.report["seed"] != run.report["seed"]:
            raise DataError(f"{other.path} built other scenes (scene seed {other.report['seed']}) than {run.path}")
        streams = [int(r.report["pooled"]["stream"]["false_alarms"]) for r in (run, other)]
        return Side(str(other.path), other.report["recipe"], other.curves, {"stream_false_alarms": streams})
    base = run.report.get("baseline")
    if run.baseline_curves is None or not base or run.baseline_recipe is None:
        return None
    secondary = {
        "clips": base.get("clips"),
        "windows": base.get("windows"),
        "stream_false_alarms": [base.get("model_stream_false_alarms"), base.get("stream_false_alarms")],
    }
    return Side(base["path"], run.baseline_recipe, run.baseline_curves, secondary)


def _check_shared(run: Run, first: Run) -> None:
    for key in _SHARED:
        if run.report[key] != first.report[key]:
            raise DataError(
                f"{run.path} and {first.path} differ in {key} ({run.report[key]!r} vs {first.report[key]!r}): "
                "pooled runs must deal the same data into the same folds and scenes"
            )


def _differences(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, list[Any]]:
    """The recipe fields (seeds and fold aside) where two recipes differ: [ours, theirs] by name."""
    ours, theirs = _without(ours, _PER_RUN), _without(theirs, _PER_RUN)
    return {k: [ours.get(k), theirs.get(k)] for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k)}


def pair_runs(runs: list[Run], against: list[Run]) -> list[Side] | None:
    """Each run's baseline side (None if no run has one), after refusing runs that are not one recipe
    (and one baseline recipe) at distinct seeds on the same folds."""
    if len(runs) < 2:
        raise DataError("pooling needs at least two crossval runs (one recipe at two or more training seeds)")
    first = runs[0]
    for run in [*runs[1:], *against]:
        _check_shared(run, first)
    for run in runs[1:]:
        differ = _differences(run.report["recipe"], first.report["recipe"])
        if differ:
            raise DataError(f"{run.path} and {first.path} are other recipes (they differ in {', '.join(differ)})")
    _distinct([r.seed for r in runs], [r.path for r in runs], "training seed")
    _distinct([a.seed for a in against], [a.path for a in against], "training seed")
    unused = [a.path for a in against if a.seed not in {r.seed for r in runs}]
    if unused:
        raise DataError(f"{unused[0]}: no pooled run has its training seed")
    found = [baseline_side(r, against) for r in runs]
    sides = [s for s in found if s is not None]
    if not sides:
        return None
    if len(sides) < len(runs):
        lone = next(r.path for r, side in zip(runs, found, strict=True) if side is None)
        raise DataError(f"{lone} has no baseline at its seed and other pooled runs have one: give it one (--against)")
    for run, side in zip(runs[1:], sides[1:], strict=True):
        if _differences(side.recipe, sides[0].recipe):
            raise DataError(f"{run.path} and {first.path} are paired with other baseline recipes")
    # A baseline seed twice would count one baseline training as if it were two.
    _distinct([int(s.recipe["seed"]) for s in sides], [r.path for r in runs], "baseline seed")
    return sides


def _distinct(seeds: list[int], paths: list[Path], what: str) -> None:
    seen: dict[int, Path] = {}
    for seed, path in zip(seeds, paths, strict=True):
        if seed in seen:
            raise DataError(f"{seen[seed]} and {path} share {what} {seed}: each pooled run needs its own")
        seen[seed] = path


def _run_row(run: Run, side: Side | None, *, seed: int) -> dict[str, Any]:
    """One seed's line: its headline (paired with its baseline's), and what else it paired."""
    row: dict[str, Any] = {"path": str(run.path), "seed": run.seed}
    if side is None:
        return row | {"headline": curve_headline(run.curves, seed=seed)}
    return row | {
        "baseline": {"path": side.path, "seed": side.recipe.get("seed")},
        "headline": paired_headline(run.curves, side.curves, seed=seed),
        "clips": side.secondary.get("clips"),
        "windows": side.secondary.get("windows"),
        "stream_false_alarms": side.secondary.get("stream_false_alarms"),
        "stream_hours": run.report["pooled"]["stream"]["hours"],
    }


def _spread(values: list[float | None]) -> list[float] | None:
    known = [v for v in values if v is not None]
    return [min(known), max(known)] if known else None


def seed_spread(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each headline recall over the seeds: this recipe's, the baseline's and their difference's
    range, and whether the pooled difference is resolved (filled in by `pool`)."""
    out: dict[str, Any] = {}
    heads = [r["headline"] for r in rows]
    for key in RECALL_KEYS:
        if "model" in heads[0]:
            model = [h["model"][key] for h in heads]
            base = [h["baseline"][key] for h in heads]
            difference = [h[key]["difference"] for h in heads]
            out[key] = {
                "model": model,
                "baseline": base,
                "difference": difference,
                "model_range": _spread(model),
                "baseline_range": _spread(base),
                "difference_range": _spread(difference),
            }
        else:
            model = [h[key] for h in heads]
            out[key] = {"model": model, "model_range": _spread(model)}
    return out


def verdict(pooled: dict[str, Any], per_seed: list[float | None]) -> str:
    """ "better" / "worse" when the pooled interval excludes 0 and every seed's difference has that
    sign; otherwise "not resolved"."""
    interval = pooled.get("interval_95")
    if not interval or any(d is None for d in per_seed):
        return "not resolved"
    if interval[0] > 0 and all(d > 0 for d in per_seed if d is not None):
        return "better"
    if interval[1] < 0 and all(d < 0 for d in per_seed if d is not None):
        return "worse"
    return "not resolved"


def pool(
    runs_dirs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    against: Sequence[str | os.PathLike[str]] = (),
    seed: int = 0,
) -> dict[str, Any]:
    """Pool the runs (see the module docstring), each paired with the `against` run of the baseline
    recipe at its training seed or else its own --baseline; writes report.json and report.md."""
    from train.report import pool_markdown

    runs = [load_run(p) for p in runs_dirs]
    others = [load_run(p) for p in against]
    sides = pair_runs(runs, others)
    curves = [c for r in runs for c in r.curves]
    first = runs[0].report
    report: dict[str, Any] = {key: first[key] for key in _SHARED}
    report |= {
        "recipe": _without(first["recipe"], _PER_RUN),
        "seeds": [r.seed for r in runs],
        "runs": [_run_row(r, sides[i] if sides else None, seed=seed) for i, r in enumerate(runs)],
    }
    if sides is None:
        report["headline"] = curve_headline(curves, seed=seed)
        report["headline_audited"] = audited_headline(curves, seed=seed)
    else:
        base_curves = [c for s in sides for c in s.curves]
        report["recipe_differences"] = _differences(first["recipe"], sides[0].recipe)
        report["headline"] = paired_headline(curves, base_curves, seed=seed)
        report["headline_audited"] = audited_headline(curves, base_curves, seed=seed)
    spread = seed_spread(report["runs"])
    if sides:
        for key in RECALL_KEYS:
            spread[key]["verdict"] = verdict(report["headline"][key], spread[key]["difference"])
    report["seed_spread"] = spread
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(pool_markdown(report))
    return report
