"""Leave-source-out cross-validation (`scream crossval --by source`) and fold models trained in
parallel (`--jobs`). Apart from tests/train/test_crossval.py so that `make test`'s workers (one file
each at a time) run the two heaviest crossval tests side by side."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.helpers import make_synthetic_dataset, small_recipe


def test_a_fold_that_fails_in_parallel_training_is_named_after_the_others_finish(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from train.crossval import train_in_parallel
    from train.pipeline import TrainConfig

    missing = tmp_path / "no-such-data"
    configs = [TrainConfig(cache_dir=str(tmp_path / "c"), folds=3, fold=k) for k in (0, 2)]
    with pytest.raises(RuntimeError, match=r"training fold 1 failed \(2 of 2 failed\): .*no-such-data"):
        train_in_parallel(str(missing), tmp_path / "cv", configs, jobs=2)


def test_crossval_by_source_keeps_every_source_on_one_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Leave-source-out: a manifest with six sources, three folds, each source tested once, by a
    model that never heard it, on scenes whose non-screams vary in level. The fold models are trained
    two at a time (`jobs`)."""
    pytest.importorskip("tensorflow")
    from train.crossval import crossval

    data = make_synthetic_dataset(tmp_path / "data", per_class=30, seed=2)
    with (data / "manifest.tsv").open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["path", "label", "group", "source"])
        for k, path in enumerate(sorted(data.rglob("*.wav"))):
            writer.writerow([path.relative_to(data).as_posix(), path.parent.name, path.stem, f"source-{k % 6}"])
    config = small_recipe(tmp_path / "cache", epochs=4, steps=10, split_by="source")
    # Two fold models trained at once in their own processes, the third after; then all evaluated.
    report = crossval(data / "manifest.tsv", tmp_path / "cv", folds=3, config=config, scenes=1, jobs=2)
    log = capsys.readouterr().out
    assert "training folds 1, 2, 3: 2 at once" in log and "fold 3 of 3: trained above" in log and "reusing" not in log
    assert all(r["trained_this_run"] is True for r in report["fold_rows"])  # trained by this run, in parallel
    assert "in which 3 of the 3 were trained" in (tmp_path / "cv" / "report.md").read_text()
    for k in range(3):
        trained = json.loads((tmp_path / "cv" / f"fold-{k}.json").read_text())["training"]["config"]
        assert (trained["fold"], trained["folds"], trained["split_by"]) == (k, 3, "source")
    assert report["split_by"] == "source" and report["level_spread_db"] == 10.0
    homes: dict[str, set[int]] = {}
    for k in range(3):
        with (tmp_path / "cv" / f"fold-{k}-run" / "splits.tsv").open() as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        sides = {name: {r["group"] for r in rows if r["split"] == name} for name in ("train", "validation", "test")}
        assert not (sides["train"] & sides["test"]) and not (sides["validation"] & sides["test"])
        for group in sides["test"]:
            homes.setdefault(group, set()).add(k)
    assert sorted(homes) == [f"source:source-{i}" for i in range(6)] and all(len(v) == 1 for v in homes.values())
    fold_screams = [r["screams"] for r in report["fold_rows"]]
    assert sum(fold_screams) == 30 and max(fold_screams) - min(fold_screams) <= 5  # whole sources of 5
    assert report["headline"]["screams"] == 30 and "whole sources" in (tmp_path / "cv" / "report.md").read_text()
