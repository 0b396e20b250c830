"""`scream crossval-pool` (train/pool.py): one recipe's crossvals at several seeds, pooled and paired.

The runs here are written by hand in the layout `scream crossval` writes (its own test reads a real
run back through `load_run`), with scene curves whose every headline number can be counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge.cli import EXIT_FATAL, EXIT_OK, main
from train.data import DataError
from train.pool import load_run, pool, verdict
from train.scenes import paired_headline

SOURCES = [["a", "a", "b", "b"], ["c", "c", "d", "d"]]  # fold 0's and fold 1's inserted screams
AUDIT = [0.9, 0.01, 0.9, 0.9]  # the second scream of each fold is one the teacher audit rejects
RECIPE = {"width": 16, "window_frames": 96, "epochs": 15, "members": 1, "distill_weight": 0.0, "split_seed": 0}


def _curve(fold: int, at_2: list[int], at_5: list[int]) -> dict[str, Any]:
    """One hour of scenes: `at_2` found at 1 false alarm, `at_5` at 4, every scream at 20."""

    def onsets(hits: list[int]) -> list[float | None]:
        return [0.5 if h else None for h in hits]

    return {
        "decisions": "2 of 2 windows",
        "hours": 1.0,
        "sources": SOURCES[fold],
        "teacher_scream": AUDIT,
        "rows": [
            {"on": 0.9, "false_alarms": 1, "hits": at_2, "onset_s": onsets(at_2)},
            {"on": 0.5, "false_alarms": 4, "hits": at_5, "onset_s": onsets(at_5)},
            {"on": 0.1, "false_alarms": 20, "hits": [1, 1, 1, 1], "onset_s": [0.3] * 4},
        ],
    }


def _write_run(
    folder: Path,
    *,
    seed: int,
    hits: list[tuple[list[int], list[int]]],
    baseline: list[tuple[list[int], list[int]]] | None = None,
    baseline_seed: int | None = None,
    recipe: dict[str, Any] | None = None,
    **shared: Any,
) -> Path:
    """A finished crossval's --out: report.json and fold-K-report/report.json (2 folds)."""
    own = {**RECIPE, **(recipe or {}), "seed": seed, "fold": 0}
    report: dict[str, Any] = {
        "data": "DATA",
        "folds": 2,
        "split_by": "source",
        "split_seed": 0,
        "scenes_per_fold": 1,
        "level_spread_db": 10.0,
        "hop_ms": None,
        "seed": seed,
        "recipe": own,
        "pooled": {"stream": {"false_alarms": 10 + seed, "hours": 2.0}},
    } | shared
    base_seed = seed if baseline_seed is None else baseline_seed
    if baseline is not None:
        differences = {"distill_weight": [own["distill_weight"], 0.0]}
        if base_seed != seed:
            differences["seed"] = [seed, base_seed]
        report["baseline"] = {
            "path": f"base-s{base_seed}",
            "recipe_differences": differences,
            "clips": {"roc_auc": {"model": 0.9, "baseline": 0.88, "difference": 0.02, "interval_95": [0.0, 0.04]}},
            "windows": None,
            "model_stream_false_alarms": 10 + seed,
            "stream_false_alarms": 12,
            "stream_hours": 2.0,
        }
    for k, (at_2, at_5) in enumerate(hits):
        fold: dict[str, Any] = {"scene_curve": _curve(k, at_2, at_5)}
        if baseline is not None:
            fold["baseline"] = {"scene_curve": _curve(k, *baseline[k])}
        (folder / f"fold-{k}-report").mkdir(parents=True)
        (folder / f"fold-{k}-report" / "report.json").write_text(json.dumps(fold))
    (folder / "report.json").write_text(json.dumps(report))
    return folder


# Recipe and baseline at seed 0 and seed 1, each fold's (hits at <= 2, hits at <= 5 false alarms/h).
# At <= 5 the recipe finds every scream and each baseline one of each source's two: +0.5 everywhere.
# At <= 2 the recipe is ahead at seed 0 (4 screams against 1) and behind at seed 1 (1 against 2).
RECIPE_S0 = [([1, 1, 1, 0], [1, 1, 1, 1]), ([1, 0, 0, 0], [1, 1, 1, 1])]
BASE_S0 = [([1, 0, 0, 0], [1, 0, 1, 0]), ([0, 0, 0, 0], [0, 1, 0, 1])]
RECIPE_S1 = [([1, 0, 0, 0], [1, 1, 1, 1]), ([0, 0, 0, 0], [1, 1, 1, 1])]
BASE_S1 = [([1, 0, 1, 0], [1, 0, 1, 0]), ([0, 0, 0, 0], [1, 0, 1, 0])]


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    distilled = {"distill_weight": 20.0}
    return (
        _write_run(tmp_path / "r0", seed=0, hits=RECIPE_S0, baseline=BASE_S0, recipe=distilled),
        _write_run(tmp_path / "r1", seed=1, hits=RECIPE_S1, baseline=BASE_S1, recipe=distilled),
    )


def test_runs_at_two_seeds_pool_into_one_paired_headline_with_each_seed_beside_it(tmp_path: Path) -> None:
    r0, r1 = _pair(tmp_path)
    report = pool([r0, r1], tmp_path / "pooled")

    head = report["headline"]
    # 16 screams over both seeds. <= 2: the recipe finds 4 (seed 0) + 1 (seed 1), the baseline 1 + 2.
    assert head["model"]["screams"] == 16 and head["model"]["hours"] == 4.0
    assert head["model"]["recall_at_2_fa_per_hour"] == pytest.approx(5 / 16, abs=1e-4)
    assert head["baseline"]["recall_at_2_fa_per_hour"] == pytest.approx(3 / 16, abs=1e-4)
    assert head["recall_at_2_fa_per_hour"]["difference"] == pytest.approx(2 / 16, abs=1e-4)
    # <= 5: every source's screams are +0.5 in every resample, so the interval is that point.
    assert head["model"]["recall_at_5_fa_per_hour"] == 1.0 and head["baseline"]["recall_at_5_fa_per_hour"] == 0.5
    assert head["recall_at_5_fa_per_hour"] == {"difference": 0.5, "interval_95": [0.5, 0.5]}
    assert head["model"]["median_onset_at_5_fa_per_hour_s"] == 0.5
    # The pooled headline is the paired headline of all folds of all seeds: sources resampled jointly.
    curves = [json.loads((r / f"fold-{k}-report" / "report.json").read_text()) for r in (r0, r1) for k in (0, 1)]
    assert head == paired_headline([c["scene_curve"] for c in curves], [c["baseline"]["scene_curve"] for c in curves])
    # Audited: the rejected second scream of each fold counts neither way (12 of 16 kept).
    audited = report["headline_audited"]
    assert (audited["of"], audited["model"]["screams"]) == (16, 12)
    assert audited["model"]["recall_at_2_fa_per_hour"] == pytest.approx(4 / 12, abs=1e-4)

    seed_0, seed_1 = report["runs"]
    assert (seed_0["seed"], seed_1["seed"], report["seeds"]) == (0, 1, [0, 1])
    assert seed_0["baseline"] == {"path": "base-s0", "seed": 0}
    assert seed_0["headline"]["recall_at_2_fa_per_hour"]["difference"] == pytest.approx(4 / 8 - 1 / 8, abs=1e-4)
    assert seed_1["headline"]["recall_at_2_fa_per_hour"]["difference"] == pytest.approx(1 / 8 - 2 / 8, abs=1e-4)
    assert seed_0["clips"]["roc_auc"]["difference"] == 0.02 and seed_0["stream_false_alarms"] == [10, 12]
    spread = report["seed_spread"]
    assert spread["recall_at_2_fa_per_hour"]["difference_range"] == [-0.125, 0.375]
    assert spread["recall_at_2_fa_per_hour"]["model_range"] == [0.125, 0.5]
    assert spread["recall_at_2_fa_per_hour"]["verdict"] == "not resolved"  # the seeds disagree in sign
    assert spread["recall_at_5_fa_per_hour"]["verdict"] == "better"
    assert report["recipe_differences"] == {"distill_weight": [20.0, 0.0]} and "seed" not in report["recipe"]

    written = json.loads((tmp_path / "pooled" / "report.json").read_text())
    assert written == json.loads(json.dumps(report))
    text = (tmp_path / "pooled" / "report.md").read_text()
    assert "# One recipe at 2 training seeds, pooled" in text
    row = "| 1 | `base-s1` (1) | 0.125 / 0.25 / -0.1250 | 1.0 / 0.5 / +0.5000 | +0.0200 | - | 11 / 12 |"
    assert f"| `{r1}` {row}" in text
    assert "| event recall at <= 5 false alarms/h | 1.0 | 0.5 | +0.5000 (+0.500 to +0.500) |" in text
    spread_row = "| 0.125 to 0.5 | 0.125 to 0.25 | -0.125 to 0.375 | not resolved |"
    assert f"| event recall at <= 2 false alarms/h {spread_row}" in text
    assert "distill_weight 20.0 (baseline 0.0)" in text


def test_a_baseline_run_at_the_same_seed_replaces_a_runs_own_baseline(tmp_path: Path) -> None:
    """The recipe at seed 1 was compared with the baseline at seed 0 (scored on seed 1's scenes); the
    baseline recipe's own seed-1 run pairs with it instead, its model curves on the same scenes."""
    r0 = _write_run(tmp_path / "r0", seed=0, hits=RECIPE_S0, baseline=BASE_S0, recipe={"distill_weight": 20.0})
    r1 = _write_run(
        tmp_path / "r1", seed=1, hits=RECIPE_S1, baseline=BASE_S0, baseline_seed=0, recipe={"distill_weight": 20.0}
    )
    with pytest.raises(DataError, match="share baseline seed 0"):
        pool([r0, r1], tmp_path / "refused")
    b1 = _write_run(tmp_path / "b1", seed=1, hits=BASE_S1)
    report = pool([r0, r1], tmp_path / "pooled", against=[b1])
    seed_1 = report["runs"][1]
    assert seed_1["baseline"] == {"path": str(b1), "seed": 1}
    assert seed_1["headline"]["baseline"]["recall_at_2_fa_per_hour"] == 0.25  # b1's own curve, not BASE_S0's 0.125
    assert seed_1["clips"] is None and seed_1["stream_false_alarms"] == [11, 11]  # both runs' own streams
    assert report["seed_spread"]["recall_at_5_fa_per_hour"]["verdict"] == "better"
    assert "| - | - | 11 / 11 |" in (tmp_path / "pooled" / "report.md").read_text()
    # The seed-1 baseline run built other scenes than the seed-1 recipe run: refused.
    other = _write_run(tmp_path / "b1-other-scenes", seed=1, hits=BASE_S1, recipe={"seed": 1})
    other_report = json.loads((other / "report.json").read_text())
    (other / "report.json").write_text(json.dumps(other_report | {"seed": 7}))
    with pytest.raises(DataError, match="other scenes"):
        pool([r0, r1], tmp_path / "refused", against=[other])
    # A baseline run whose seed no pooled run has is a mistake, not ignored.
    b5 = _write_run(tmp_path / "b5", seed=5, hits=BASE_S1)
    with pytest.raises(DataError, match="no pooled run has its training seed"):
        pool([r0, r1], tmp_path / "refused", against=[b1, b5])
    assert not (tmp_path / "refused").exists()


def test_runs_without_baselines_pool_their_own_headline(tmp_path: Path) -> None:
    r0 = _write_run(tmp_path / "r0", seed=0, hits=RECIPE_S0)
    r1 = _write_run(tmp_path / "r1", seed=1, hits=RECIPE_S1)
    report = pool([r0, r1], tmp_path / "pooled")
    assert report["headline"]["recall_at_2_fa_per_hour"] == pytest.approx(5 / 16, abs=1e-4)
    assert "recipe_differences" not in report and "verdict" not in report["seed_spread"]["recall_at_2_fa_per_hour"]
    assert report["seed_spread"]["recall_at_5_fa_per_hour"]["model_range"] == [1.0, 1.0]
    text = (tmp_path / "pooled" / "report.md").read_text()
    assert f"| `{r0}` | 0 | 0.5 | 1.0 |" in text and "| event recall at <= 5 false alarms/h | 1.0 to 1.0 |" in text


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ({"recipe": {"width": 32}}, "other recipes .*width"),
        ({"seed": 0}, "share training seed 0"),
        ({"split_seed": 3}, "differ in split_seed"),
        ({"scenes_per_fold": 3}, "differ in scenes_per_fold"),
        ({"baseline": None}, "no baseline at its seed"),
    ],
)
def test_runs_that_are_not_one_recipe_at_distinct_seeds_are_refused(
    tmp_path: Path, second: dict[str, Any], message: str
) -> None:
    r0 = _write_run(tmp_path / "r0", seed=0, hits=RECIPE_S0, baseline=BASE_S0)
    options: dict[str, Any] = {"seed": 1, "hits": RECIPE_S1, "baseline": BASE_S1} | second
    r1 = _write_run(tmp_path / "r1", **options)
    with pytest.raises(DataError, match=message):
        pool([r0, r1], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_other_baseline_recipes_and_unreadable_runs_are_refused(tmp_path: Path) -> None:
    r0 = _write_run(tmp_path / "r0", seed=0, hits=RECIPE_S0, baseline=BASE_S0)
    r1 = _write_run(tmp_path / "r1", seed=1, hits=RECIPE_S1, baseline=BASE_S1)
    report = json.loads((r1 / "report.json").read_text())
    report["baseline"]["recipe_differences"]["width"] = [16, 8]
    (r1 / "report.json").write_text(json.dumps(report))
    with pytest.raises(DataError, match="other baseline recipes"):
        pool([r0, r1], tmp_path / "out")
    with pytest.raises(DataError, match="at least two"):
        pool([r0], tmp_path / "out")
    (r1 / "fold-1-report" / "report.json").unlink()
    with pytest.raises(DataError, match="fold 1's evaluation"):
        load_run(r1)
    (r1 / "report.json").write_text("{")
    with pytest.raises(DataError, match="unreadable"):
        load_run(r1)
    (r1 / "report.json").write_text(json.dumps({"folds": 2}))
    with pytest.raises(DataError, match="lacks data"):
        load_run(r1)
    with pytest.raises(DataError, match="missing"):
        load_run(tmp_path / "nowhere")


def test_verdict_needs_the_interval_and_every_seed() -> None:
    assert verdict({"interval_95": [0.01, 0.2]}, [0.1, 0.02]) == "better"
    assert verdict({"interval_95": [-0.2, -0.01]}, [-0.1, -0.3]) == "worse"
    assert verdict({"interval_95": [0.01, 0.2]}, [0.1, -0.02]) == "not resolved"
    assert verdict({"interval_95": [-0.01, 0.2]}, [0.1, 0.2]) == "not resolved"
    assert verdict({}, [0.1, 0.2]) == "not resolved"  # a single scream source: no interval


def test_the_command_prints_the_pooled_differences_and_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r0, r1 = _pair(tmp_path)
    assert main(["crossval-pool", str(r0), str(r1), "--out", str(tmp_path / "pooled")]) == EXIT_OK
    out = capsys.readouterr().out
    assert "at <= 5 false alarms/h over seeds [0, 1]: 1.0 against 0.5, difference +0.5000 (+0.500 to +0.500)" in out
    assert "difference +0.1250 (+0.000 to +0.250), per seed [0.375, -0.125]: not resolved" in out
    assert main(["crossval-pool", str(r0), str(r0), "--out", str(tmp_path / "again")]) == EXIT_FATAL
    assert "share training seed 0" in capsys.readouterr().err


def test_a_run_written_before_a_recipe_field_existed_counts_that_fields_default(tmp_path: Path) -> None:
    """As crossval reads old sidecars: a report without `spoken_fraction` was trained at its default (0)."""
    r0 = _write_run(tmp_path / "r0", seed=0, hits=RECIPE_S0)
    assert "spoken_fraction" not in json.loads((r0 / "report.json").read_text())["recipe"]
    assert load_run(r0).report["recipe"]["spoken_fraction"] == 0.0
    r1 = _write_run(tmp_path / "r1", seed=1, hits=RECIPE_S1, recipe={"spoken_fraction": 0.0})
    assert pool([r0, r1], tmp_path / "pooled")["seeds"] == [0, 1]
    r2 = _write_run(tmp_path / "r2", seed=2, hits=RECIPE_S1, recipe={"spoken_fraction": 0.1})
    with pytest.raises(DataError, match=r"other recipes .*spoken_fraction"):
        pool([r0, r2], tmp_path / "refused")


def test_a_teacher_path_counts_only_in_a_recipe_that_distils(tmp_path: Path) -> None:
    """The same teacher spelt as another path is no recipe difference where nothing distils."""
    r0 = _write_run(tmp_path / "r0", seed=0, hits=RECIPE_S0, recipe={"teacher_dir": "../shared/models/yamnet"})
    r1 = _write_run(tmp_path / "r1", seed=1, hits=RECIPE_S1, recipe={"teacher_dir": "/work/shared/models/yamnet"})
    assert pool([r0, r1], tmp_path / "pooled")["seeds"] == [0, 1]
    distilling = {"distill_weight": 20.0, "distill_target": "scores"}
    d0 = _write_run(tmp_path / "d0", seed=0, hits=RECIPE_S0, recipe={**distilling, "teacher_dir": "a/yamnet"})
    d1 = _write_run(tmp_path / "d1", seed=1, hits=RECIPE_S1, recipe={**distilling, "teacher_dir": "b/yamnet"})
    with pytest.raises(DataError, match=r"other recipes .*teacher_dir"):
        pool([d0, d1], tmp_path / "refused")
