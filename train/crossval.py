"""`scream crossval`: the training recipe measured on every recording group (or source) of a data set.

The data set's groups are dealt into `folds` parts (train/splits.py `group_folds`; with `--by source`
whole sources with the screams balanced, `source_folds`: leave-source-out). Fold model k is
trained by `scream train`'s own code with part k as its test split, part k+1 as validation (early
stopping, thresholds, operating point) and the rest as train, then evaluated by `scream evaluate` on
part k. Every group is thus scored once, by a model that never saw it, and the out-of-fold results
pool into estimates with several times the screams of one test split: the recipe's, not one model's.

The headline is each fold's scenes (its own test clips: non-screams back to back, screams inserted
at 0-20 dB) through the live decisions at every `on`: event recall at <= 2 and <= 5 false alarms per
hour and false alarms per hour at recall 0.8, pooled over the folds with intervals
(train/scenes.py `curve_headline`); window and clip ranking metrics follow.

Fold models already in the output folder with the same recipe are reused, so an interrupted run
resumes where it stopped. With `jobs` > 1 the fold models still to train are trained first, that many
at once in their own processes (each with its share of the cores), and then evaluated in order.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from train import metrics
from train.data import Clip, DataError, load_dataset, regroup
from train.evaluate import (
    RANKING_METRICS,
    evaluate_with_scores,
    paired_rows,
    ranking_block,
    split_windows,
    window_groups,
)
from train.pipeline import TrainConfig, train
from train.report import crossval_markdown
from train.scenes import audited_headline, curve_headline, paired_headline
from train.splits import group_folds, read_split, source_folds

LEVEL_SPREAD_DB = 10.0  # leave-source-out scenes: each non-scream within +-10 dB of its recorded level
# Recipe fields that do not change what a fold model learns.
_NOT_RECIPE = ("cache_dir", "verbose")
# Fields that recipes no longer have, at the value that meant "off": a sidecar holding one at that
# value was trained as today's recipe is; at another value it was not.
_REMOVED = {"splice_fraction": 0.0}
# Fields read only while distilling: without distillation (distill_weight 0) no teacher is loaded,
# so a recipe that names another teacher path or target learns the same.
_DISTILL_ONLY = ("teacher_dir", "distill_target")


def _log(message: str) -> None:
    print(message, flush=True)


@dataclass
class FoldResult:
    fold: int
    report: dict[str, Any]
    sidecar: dict[str, Any]
    window_labels: npt.NDArray[np.bool_]
    window_scores: npt.NDArray[np.float64]
    window_groups: npt.NDArray[np.str_]
    clip_labels: npt.NDArray[np.bool_]
    clip_scores: npt.NDArray[np.float64]
    clip_groups: npt.NDArray[np.str_]
    trained_now: bool
    # With a baseline run: its fold model's scores on the same windows and clips.
    baseline_window_scores: npt.NDArray[np.float64] | None = None
    baseline_clip_scores: npt.NDArray[np.float64] | None = None


def recipe_fields(config: TrainConfig | dict[str, Any]) -> dict[str, Any]:
    """The fields that decide what a fold model learns; a sidecar written before a field existed
    counts as that field's default (fields are added with the old behaviour as default), and so does
    a distillation-only field of a recipe that does not distil."""
    defaults = asdict(TrainConfig())
    fields = asdict(config) if isinstance(config, TrainConfig) else {**defaults, **config}
    if not fields["distill_weight"]:
        fields.update({k: defaults[k] for k in _DISTILL_ONLY})
    return {k: v for k, v in fields.items() if k not in _NOT_RECIPE and not (k in _REMOVED and v == _REMOVED[k])}


def trained_recipe(model: Path) -> dict[str, Any] | None:
    """The recipe in a fold model's sidecar; None if the model or a readable sidecar is missing."""
    sidecar = model.with_suffix(".json")
    if not (model.is_file() and sidecar.is_file()):
        return None
    try:
        return recipe_fields(json.loads(sidecar.read_text())["training"]["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def tests_fold(model: Path, test_clips: list[Clip], base: Path) -> bool:
    """Whether the fold model's splits.tsv tests exactly `test_clips`."""
    splits = model.parent / f"{model.stem}-run" / "splits.tsv"
    try:
        return set(read_split(splits, "test", base)) == {c.path.resolve() for c in test_clips}
    except (OSError, ValueError, KeyError):
        return False


def reusable(model: Path, config: TrainConfig, test_clips: list[Clip], base: Path) -> bool:
    """Whether `model` was trained by this recipe for this fold, on the fold the data set deals now
    (a data set that changed since deals other folds), and its sidecar is readable."""
    return trained_recipe(model) == recipe_fields(config) and tests_fold(model, test_clips, base)


def _limit_threads(threads: int) -> None:
    """A fold-training worker's start: TensorFlow runs its ops on `threads` cores."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _train_fold(data: str, out: str, config: TrainConfig) -> str:
    train(data, out, config=config)
    return out


def train_in_parallel(data: str, out: Path, configs: list[TrainConfig], jobs: int) -> None:
    """Train the fold models of `configs` (each to out/fold-K), `jobs` at once, each in a fresh
    process with cpu_count // jobs TensorFlow threads. One fold's failure is raised after the others
    finish (their models stay, so the run resumes from them)."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    _log(f"== training folds {', '.join(str(c.fold + 1) for c in configs)}: {jobs} at once, {threads} thread(s) each")
    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive a fork
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_limit_threads, initargs=(threads,)) as pool:
        futures = [pool.submit(_train_fold, str(data), str(out / f"fold-{c.fold}"), c) for c in configs]
        errors = [f.exception() for f in futures]
    failed = [(c.fold, e) for c, e in zip(configs, errors, strict=True) if e is not None]
    if failed:
        fold, error = failed[0]
        raise RuntimeError(
            f"training fold {fold + 1} failed ({len(failed)} of {len(configs)} failed): {error}"
        ) from error


def check_baseline(baseline: Path, parts: list[list[Clip]], base: Path) -> dict[str, Any]:
    """Refuse, before any training, a baseline folder without a fold model testing each fold as the
    data set deals it now; return the baseline's recipe (its first fold model's)."""
    recipes = []
    for k, part in enumerate(parts):
        model = baseline / f"fold-{k}.tflite"
        recipe = trained_recipe(model)
        if recipe is None:
            raise DataError(
                f"baseline {baseline}: no fold-{k}.tflite with a readable sidecar (a `scream crossval` --out?)"
            )
        if not tests_fold(model, part, base):
            raise DataError(
                f"baseline {baseline}: fold-{k} tests other clips than this data set's fold {k} "
                "(another data set, split seed or number of folds, or folds dealt by an older version)"
            )
        recipes.append(recipe)
    return recipes[0]


def run_fold(
    data: str | os.PathLike[str],
    out: Path,
    config: TrainConfig,
    test_clips: list[Clip],
    base: Path,
    *,
    scenes: int,
    seed: int,
    baseline: Path | None = None,
    level_spread_db: float = 0.0,
    hop_ms: int = 0,
    trained_above: bool = False,
) -> FoldResult:
    """Train fold model `config.fold` unless a reusable one is in `out` (`trained_above`: this run
    has just trained it, in train_in_parallel), then evaluate it on its test fold."""
    model = out / f"fold-{config.fold}.tflite"
    trained_now = not reusable(model, config, test_clips, base)
    if trained_now:
        _log(f"== fold {config.fold + 1} of {config.folds}: training")
        train(data, model.with_suffix(""), config=config)
    elif trained_above:
        _log(f"== fold {config.fold + 1} of {config.folds}: trained above, evaluating {model}")
    else:
        _log(f"== fold {config.fold + 1} of {config.folds}: reusing {model} (same recipe and fold)")
    evaluation = evaluate_with_scores(
        model,
        data,
        out_dir=out / f"fold-{config.fold}-report",
        splits_file=out / f"fold-{config.fold}-run" / "splits.tsv",
        split="test",
        cache_dir=config.cache_dir,
        seed=seed,
        scenes=scenes,
        make_plots=False,
        baseline=baseline / f"fold-{config.fold}.tflite" if baseline else None,
        level_spread_db=level_spread_db,
        hop_ms=hop_ms,
    )
    scored, base_scored = evaluation.scored, evaluation.baseline_scored
    labels, scores = split_windows(scored)
    return FoldResult(
        fold=config.fold,
        report=evaluation.report,
        sidecar=json.loads(model.with_suffix(".json").read_text()),
        window_labels=labels,
        window_scores=scores,
        window_groups=window_groups(scored),
        clip_labels=np.array([s.clip.is_scream for s in scored]),
        clip_scores=np.array([s.peak for s in scored]),
        clip_groups=np.array([s.clip.group for s in scored], dtype=str),
        trained_now=trained_now or trained_above,
        # None also when the baseline cuts other windows (evaluate then pairs clips and scenes only).
        baseline_window_scores=split_windows(base_scored)[1]
        if base_scored and evaluation.report["baseline"]["windows"] is not None
        else None,
        baseline_clip_scores=np.array([s.peak for s in base_scored]) if base_scored else None,
    )


def crossval(
    data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    folds: int = 5,
    config: TrainConfig | None = None,
    scenes: int = 1,
    seed: int = 0,
    baseline: str | os.PathLike[str] | None = None,
    level_spread_db: float | None = None,
    hop_ms: int = 0,
    jobs: int = 1,
) -> dict[str, Any]:
    """Train and evaluate `folds` fold models; writes report.md and report.json to `out_dir`.

    With `config.split_by` "source" the folds are whole sources with the screams balanced
    (leave-source-out), and each fold's scenes vary the level of its non-screams by
    `level_spread_db` (default 10 dB; 0 for group folds, as before).

    `baseline`: the folder of another cross-validation of the same data set and folds (another
    recipe); each fold's baseline model is scored on the same test fold, and the report adds every
    pooled metric's difference with a paired interval over recording groups.

    `hop_ms` > 0: every fold's streams and scenes (the baseline's too) are decided as `listen` decides
    with `[detector] hop_ms` set to it (`scream evaluate --hop-ms`); the fold models are the same, so
    a finished run evaluated again at another hop trains nothing.

    `jobs` > 1: the fold models still to train are trained that many at once first (train_in_parallel);
    the same recipe and seeds, though TensorFlow's sums on fewer threads may differ in the last bits."""
    config = config or TrainConfig()
    if level_spread_db is None:
        level_spread_db = LEVEL_SPREAD_DB if config.split_by == "source" else 0.0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # Dealt here too, so too few groups fail before any training, and reused fold models are checked
    # against the folds of the data set as it is now.
    dataset = regroup(load_dataset(data), config.split_by)
    deal = source_folds if config.split_by == "source" else group_folds
    parts = deal(dataset.clips, folds, seed=config.effective_split_seed)
    base_dir = Path(baseline) if baseline else None
    base_recipe = check_baseline(base_dir, parts, dataset.base) if base_dir else None
    configs = [replace(config, folds=folds, fold=k) for k in range(folds)]
    trained_above: set[int] = set()
    if jobs > 1:
        missing = [c for c in configs if not reusable(out / f"fold-{c.fold}.tflite", c, parts[c.fold], dataset.base)]
        if len(missing) > 1:
            train_in_parallel(str(data), out, missing, min(jobs, len(missing)))
            trained_above = {c.fold for c in missing}
    results = [
        run_fold(
            data,
            out,
            configs[k],
            parts[k],
            dataset.base,
            scenes=scenes,
            seed=seed,
            baseline=base_dir,
            level_spread_db=level_spread_db,
            hop_ms=hop_ms,
            trained_above=k in trained_above,
        )
        for k in range(folds)
    ]
    tested = [set(r.clip_groups) for r in results]
    for i in range(folds):
        for j in range(i + 1, folds):
            if tested[i] & tested[j]:
                raise RuntimeError(f"folds {i} and {j} both test group {sorted(tested[i] & tested[j])[0]!r}")
    report = pooled_report(results, config=config, data=data, folds=folds, scenes=scenes, seed=seed)
    report["level_spread_db"] = level_spread_db
    report["hop_ms"] = hop_ms or None  # None: each fold model's own hop
    if base_dir and base_recipe is not None:
        report["baseline"] = pooled_baseline(results, base_dir, base_recipe, report["recipe"], seed=seed)
    report["seconds"] = round(time.monotonic() - started, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(crossval_markdown(report))
    _log(f"cross-validation report: {out / 'report.md'}")
    return report


def pooled_report(
    results: list[FoldResult], *, config: TrainConfig, data: str | os.PathLike[str], folds: int, scenes: int, seed: int
) -> dict[str, Any]:
    """Per-fold rows, their mean and spread, and the out-of-fold results pooled."""
    rows = [fold_row(r) for r in results]
    cat = np.concatenate
    windows = ranking_block(
        cat([r.window_labels for r in results]),
        cat([r.window_scores for r in results]),
        cat([r.window_groups for r in results]),
        seed=seed,
    )
    clips = ranking_block(
        cat([r.clip_labels for r in results]),
        cat([r.clip_scores for r in results]),
        cat([r.clip_groups for r in results]),
        seed=seed,
    )
    # At each fold model's own `on` (chosen on its own validation fold): the shipped decision.
    confusion = {
        key: sum(r.report["windows"]["confusion_at_threshold"][key] for r in results)
        for key in ("true_positive", "false_positive", "true_negative", "false_negative")
    }
    tp, fp, tn, fn = confusion.values()
    stream_alarms = sum(r.report["stream"]["false_alarms"] for r in results)
    stream_hours = sum(r.report["stream"]["hours"] for r in results)
    low, high = metrics.poisson_rate_interval(stream_alarms, stream_hours)
    scene = {key: sum(r.report["scene"][key] for r in results) for key in ("screams", "detected", "false_alarms")}
    scene_hours = sum(r.report["scene"]["hours"] for r in results)
    spread = {
        key: {"mean": round(float(np.mean(values)), 4), "sd": round(float(np.std(values, ddof=1)), 4)}
        for key in (*RANKING_METRICS, "clip_roc_auc", "stream_false_alarms_per_hour", "scene_event_recall")
        for values in [[row[key] for row in rows]]
    }
    return {
        "data": str(data),
        "folds": folds,
        "split_by": config.split_by,
        "headline": curve_headline([r.report["scene_curve"] for r in results], seed=seed),
        "headline_audited": audited_headline([r.report["scene_curve"] for r in results], seed=seed),
        "decision_variants": pooled_decision_variants(results),
        "conditions": pooled_conditions(results),
        "negative_families": _summed(r.report["negatives"]["family"] for r in results),
        "sources": _summed(r.report["sources"] for r in results),
        "recipe": recipe_fields(config) | {"folds": folds},
        "split_seed": config.effective_split_seed,
        "scenes_per_fold": scenes,
        "seed": seed,
        "fold_rows": rows,
        "fold_spread": spread,
        "pooled": {
            "clips": int(sum(r.clip_labels.size for r in results)),
            "screams": int(sum(r.clip_labels.sum() for r in results)),
            "scream_groups": len({g for r in results for g, y in zip(r.clip_groups, r.clip_labels, strict=True) if y}),
            "windows": windows,
            "clips_ranking": clips,
            "windows_at_own_on": confusion
            | {
                "recall": round(tp / max(tp + fn, 1), 4),
                "false_positive_rate": round(fp / max(fp + tn, 1), 4),
            },
            "stream": {
                "false_alarms": stream_alarms,
                "at_clip_boundary": sum(r.report["stream"]["at_clip_boundary"] for r in results),
                "boundary_window_share": round(
                    sum(r.report["stream"]["boundary_window_share"] * r.report["stream"]["hours"] for r in results)
                    / max(stream_hours, 1e-9),
                    3,
                ),
                "hours": round(stream_hours, 3),
                "false_alarms_per_hour": round(stream_alarms / max(stream_hours, 1e-9), 3),
                "false_alarms_per_hour_interval_95": [round(low, 3), round(high, 3)],
            },
            "scene": scene
            | {
                "hours": round(scene_hours, 3),
                "event_recall": round(scene["detected"] / max(scene["screams"], 1), 4),
                "false_alarms_per_hour": round(scene["false_alarms"] / max(scene_hours, 1e-9), 3),
            },
        },
    }


def pooled_baseline(
    results: list[FoldResult], baseline: Path, base_recipe: dict[str, Any], recipe: dict[str, Any], *, seed: int
) -> dict[str, Any]:
    """This recipe against the baseline run's, out of fold: the pooled ranking metrics of both on the
    same windows and clips with paired differences, and both runs' stream false alarms."""
    cat = np.concatenate
    base_clips = []
    for r in results:
        if r.baseline_clip_scores is None:
            raise ValueError(f"fold {r.fold} was evaluated without its baseline model")
        base_clips.append(r.baseline_clip_scores)
    # A baseline with another window or hop cuts other windows: those are not paired.
    base_windows = [r.baseline_window_scores for r in results]
    same_windows = all(w is not None for w in base_windows)
    return {
        "path": str(baseline),
        "recipe_differences": {
            key: [recipe.get(key), base_recipe.get(key)]
            for key in sorted(set(recipe) | set(base_recipe))
            if key != "fold" and recipe.get(key) != base_recipe.get(key)
        },
        "windows": paired_rows(
            cat([r.window_labels for r in results]),
            cat([r.window_scores for r in results]),
            cat([w for w in base_windows if w is not None]),
            cat([r.window_groups for r in results]),
            seed=seed,
        )
        if same_windows
        else None,
        "window_cut": results[0].report["baseline"].get("window_cut") if results else None,
        "clips": paired_rows(
            cat([r.clip_labels for r in results]),
            cat([r.clip_scores for r in results]),
            cat(base_clips),
            cat([r.clip_groups for r in results]),
            seed=seed,
        ),
        "headline": paired_headline(
            [r.report["scene_curve"] for r in results],
            [r.report["baseline"]["scene_curve"] for r in results],
            seed=seed,
        ),
        "headline_audited": audited_headline(
            [r.report["scene_curve"] for r in results],
            [r.report["baseline"]["scene_curve"] for r in results],
            seed=seed,
        ),
        "stream_false_alarms": sum(r.report["baseline"]["stream_false_alarms"] for r in results),
        "model_stream_false_alarms": sum(r.report["stream"]["false_alarms"] for r in results),
        "stream_hours": round(sum(r.report["stream"]["hours"] for r in results), 3),
    }


def pooled_decision_variants(results: list[FoldResult]) -> list[dict[str, Any]]:
    """evaluate's `[detector]` variants (each at its fold model's own `on`) pooled over the folds
    that report them all: alarms and screams are summed, so each rate is over all folds' hours."""
    counts = ("stream_false_alarms", "scene_detected", "scene_screams", "scene_false_alarms")
    pooled: dict[str, dict[str, Any]] = {}
    for r in results:
        for row in r.report["decision_variants"]:
            v = pooled.setdefault(
                row["decisions"],
                {"folds": 0, "shipped_by_folds": 0, "latencies": [], "stream_hours": 0.0, "scene_hours": 0.0}
                | dict.fromkeys(counts, 0),
            )
            v["folds"] += 1
            v["shipped_by_folds"] += int(row["shipped"])
            v["stream_hours"] += r.report["stream"]["hours"]
            v["scene_hours"] += r.report["scene"]["hours"]
            for key in counts:
                v[key] += row[key]
            if row["median_onset_to_alarm_s"] is not None:
                v["latencies"].append(row["median_onset_to_alarm_s"])
    return [
        {
            "decisions": decisions,
            "shipped_by_folds": v["shipped_by_folds"],
            "stream_false_alarms": v["stream_false_alarms"],
            "stream_false_alarms_per_hour": round(v["stream_false_alarms"] / max(v["stream_hours"], 1e-9), 3),
            "scene_event_recall": round(v["scene_detected"] / max(v["scene_screams"], 1), 4),
            "scene_false_alarms_per_hour": round(v["scene_false_alarms"] / max(v["scene_hours"], 1e-9), 3),
            "median_of_fold_median_onset_to_alarm_s": round(float(np.median(v["latencies"])), 3)
            if v["latencies"]
            else None,
        }
        for decisions, v in pooled.items()
        if v["folds"] == len(results)
    ]


def _summed(tables: Iterable[dict[str, dict[str, Any]]]) -> dict[str, dict[str, int]]:
    """Rows of per-fold count tables (family or source -> counts) summed over the folds; rates are
    left out, the counts give them back."""
    out: dict[str, dict[str, int]] = {}
    for table in tables:
        for name, row in table.items():
            into = out.setdefault(name, {})
            for key, value in row.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    into[key] = into.get(key, 0) + value
    return dict(sorted(out.items()))


def pooled_conditions(results: list[FoldResult]) -> dict[str, dict[str, Any]]:
    """evaluate's recording conditions over the folds: screams found and non-screams firing (clip peak
    at each fold model's own `on`) summed; window ROC AUC and recall at 1% FPR as the folds' mean."""
    out: dict[str, dict[str, Any]] = {}
    for name in results[0].report["conditions"]:
        rows = [r.report["conditions"][name] for r in results if name in r.report["conditions"]]
        if len(rows) < len(results):
            continue
        out[name] = {
            "fold_mean_roc_auc": round(float(np.mean([row["roc_auc"] for row in rows])), 4),
            "fold_mean_recall_at_1pct_fpr": round(float(np.mean([row["recall_at_1pct_fpr"] for row in rows])), 4),
        } | {
            key: sum(row[key] for row in rows)
            for key in ("screams_found", "screams", "non_screams_firing", "non_screams")
        }
    return out


def fold_row(result: FoldResult) -> dict[str, Any]:
    report, training = result.report, result.sidecar.get("training", {})
    thresholds = result.sidecar.get("thresholds", {})
    screams = [g for g, y in zip(result.clip_groups, result.clip_labels, strict=True) if y]
    return {
        "fold": result.fold,
        "screams": len(screams),
        "scream_groups": len(set(screams)),
        "non_screams": int((~result.clip_labels).sum()),
        **{key: report["windows"][key] for key in RANKING_METRICS},
        "clip_roc_auc": report["clips"]["roc_auc"],
        "on": thresholds.get("on"),
        "stream_false_alarms": report["stream"]["false_alarms"],
        "stream_hours": report["stream"]["hours"],
        "stream_false_alarms_per_hour": report["stream"]["false_alarms_per_hour"],
        "scene_event_recall": report["scene"]["event_recall"],
        "scene_false_alarms_per_hour": report["scene"]["false_alarms_per_hour"],
        "median_onset_to_alarm_s": report["scene"]["median_onset_to_alarm_s"],
        "training_seconds": training.get("seconds"),
        "trained_this_run": result.trained_now,
    }
