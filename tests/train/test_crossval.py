from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge.cli import build_parser
from tests.helpers import make_synthetic_dataset, small_recipe
from train.data import LABELS, Clip, DataError, load_dataset
from train.splits import fold_splits, group_folds, split_by_group


def _clips(groups_per_label: int = 10, seed: int = 0) -> list[Clip]:
    """Groups of 1-6 clips each, as uneven as the corpus's."""
    rng = np.random.default_rng(seed)
    clips = []
    for label in ("scream", "non_scream"):
        for g in range(groups_per_label):
            for i in range(int(rng.integers(1, 7))):
                clips.append(Clip(path=Path(f"/d/{label}/{g}/{i}.wav"), label=label, group=f"{label}-{g}"))
    return clips


def test_group_folds_deal_whole_groups_of_both_labels_into_even_parts() -> None:
    clips = _clips()
    parts = group_folds(clips, 4, seed=3)
    assert sorted(str(c.path) for part in parts for c in part) == sorted(str(c.path) for c in clips)
    owners: dict[str, set[int]] = {}
    for k, part in enumerate(parts):
        assert {c.label for c in part} == {"scream", "non_scream"}
        for c in part:
            owners.setdefault(c.group, set()).add(k)
    assert all(len(folds) == 1 for folds in owners.values())
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 8, sizes  # about a quarter each, whole groups of up to 6 clips
    assert [[c.path for c in p] for p in group_folds(clips, 4, seed=3)] == [[c.path for c in p] for p in parts]
    assert [[c.path for c in p] for p in group_folds(clips, 4, seed=4)] != [[c.path for c in p] for p in parts]


def test_fold_splits_rotate_test_and_validation_so_every_group_is_tested_once() -> None:
    clips = _clips()
    parts = group_folds(clips, 4, seed=0)
    tested: list[str] = []
    for k in range(4):
        splits = fold_splits(clips, 4, k, seed=0)
        assert [c.path for c in splits["test"]] == [c.path for c in parts[k]]
        assert [c.path for c in splits["validation"]] == [c.path for c in parts[(k + 1) % 4]]
        sides = {name: {c.group for c in members} for name, members in splits.items()}
        assert not (sides["train"] & sides["test"] or sides["train"] & sides["validation"])
        assert not sides["validation"] & sides["test"]
        assert len(splits["train"]) + len(splits["validation"]) + len(splits["test"]) == len(clips)
        tested += sorted(sides["test"])
    assert sorted(tested) == sorted({c.group for c in clips})


def test_fold_splits_refuse_impossible_requests() -> None:
    clips = _clips(groups_per_label=4)
    with pytest.raises(DataError, match="at least 3 folds"):
        fold_splits(clips, 2, 0)
    with pytest.raises(DataError, match=r"fold 5 is not one of 0\.\.4"):
        fold_splits(clips, 5, 5)
    with pytest.raises(DataError, match="has 4 groups; 6 folds need at least one group each"):
        group_folds(clips, 6)


def test_three_part_splits_are_unchanged_by_the_fold_code() -> None:
    """split_by_group now shares the group dealer with the folds; a committed run's splits.tsv must
    still reproduce: the first three random groups go to test, validation, train, the rest largest first."""
    clips = _clips(groups_per_label=12, seed=5)
    splits = split_by_group(clips, seed=11)
    rng = np.random.default_rng(11)
    for label in LABELS:  # in the dealer's order: one random stream for both labels
        names = sorted({c.group for c in clips if c.label == label})
        rng.shuffle(names)
        assert {c.group for c in splits["test"]} >= {names[0]}
        assert {c.group for c in splits["validation"]} >= {names[1]}
        assert {c.group for c in splits["train"]} >= {names[2]}
    shares = np.array([len(splits[s]) for s in ("train", "validation", "test")]) / len(clips)
    np.testing.assert_allclose(shares, [0.7, 0.15, 0.15], atol=0.08)


def test_crossval_scores_every_group_once_pools_the_folds_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tensorflow")
    from train.crossval import crossval, reusable

    # More clips than the shared synthetic set: a fold's test windows are the export's int8 check
    # set, and under 100 of them one window of int8 rounding across `on` costs more than its 1%.
    data = make_synthetic_dataset(tmp_path / "data", per_class=45, seed=1)
    config = small_recipe(tmp_path / "cache", epochs=6, steps=12)
    out = tmp_path / "cv"
    report = crossval(data, out, folds=3, config=config, scenes=1)

    rows = report["fold_rows"]
    assert [r["fold"] for r in rows] == [0, 1, 2] and all(r["trained_this_run"] for r in rows)
    tested: list[str] = []
    for k in range(3):
        with (out / f"fold-{k}-run" / "splits.tsv").open() as handle:
            split_rows = list(csv.DictReader(handle, delimiter="\t"))
        tested += [r["path"] for r in split_rows if r["split"] == "test"]
        fold_report = json.loads((out / f"fold-{k}-report" / "report.json").read_text())
        assert (
            fold_report["data"]["split"] == "test"
            and fold_report["data"]["clips"] == rows[k]["screams"] + rows[k]["non_screams"]
        )
        sidecar = json.loads((out / f"fold-{k}.json").read_text())
        assert (sidecar["training"]["config"]["folds"], sidecar["training"]["config"]["fold"]) == (3, k)
    assert sorted(tested) == sorted(p.relative_to(data).as_posix() for p in data.rglob("*.wav"))

    pooled = report["pooled"]
    assert pooled["clips"] == 90 and pooled["screams"] == 45 and pooled["scream_groups"] == 45
    assert pooled["stream"]["false_alarms"] == sum(r["stream_false_alarms"] for r in rows)
    boundary = [json.loads((out / f"fold-{k}-report" / "report.json").read_text())["stream"] for k in range(3)]
    assert pooled["stream"]["at_clip_boundary"] == sum(b["at_clip_boundary"] for b in boundary)
    assert 0 < pooled["stream"]["boundary_window_share"] < 1
    assert pooled["stream"]["hours"] == pytest.approx(sum(r["stream_hours"] for r in rows), abs=1e-3)
    assert pooled["windows"]["count"] > pooled["clips"]
    low, high = pooled["windows"]["interval_95"]["roc_auc"]
    assert low <= pooled["windows"]["roc_auc"] <= high
    # The synthetic classes separate out of fold too: each group judged by a model that never saw it.
    assert pooled["windows"]["roc_auc"] >= 0.9 and pooled["clips_ranking"]["roc_auc"] >= 0.9
    mean_roc = np.mean([r["roc_auc"] for r in rows])
    assert report["fold_spread"]["roc_auc"]["mean"] == pytest.approx(mean_roc, abs=1e-4)
    # The [detector] rules every fold reports, pooled from the counts each fold's variant rows carry;
    # a fold's shipped row holds the same counts as its stream and scene, and its rates match them.
    variants = {v["decisions"]: v for v in report["decision_variants"]}
    assert {"1 of 1 window", "2 of 2 windows", "mean of 2 windows", "mean of 3 windows"} <= set(variants)
    assert sum(v["shipped_by_folds"] for v in variants.values()) <= 3
    fold_variants = []
    for k in range(3):
        fold_report = json.loads((out / f"fold-{k}-report" / "report.json").read_text())
        fold_variants.append({v["decisions"]: v for v in fold_report["decision_variants"]})
        own = next(v for v in fold_report["decision_variants"] if v["shipped"])
        hours = fold_report["stream"]["hours"]
        assert own["stream_false_alarms"] == fold_report["stream"]["false_alarms"]
        assert (own["scene_detected"], own["scene_screams"], own["scene_false_alarms"]) == (
            fold_report["scene"]["detected"],
            fold_report["scene"]["screams"],
            fold_report["scene"]["false_alarms"],
        )
        assert round(own["stream_false_alarms_per_hour"] * hours) == fold_report["stream"]["false_alarms"]
        assert round(own["scene_event_recall"] * fold_report["scene"]["screams"]) == fold_report["scene"]["detected"]
    for name, v in variants.items():
        assert v["stream_false_alarms"] == sum(f[name]["stream_false_alarms"] for f in fold_variants)
        detected = sum(f[name]["scene_detected"] for f in fold_variants)
        assert v["scene_event_recall"] == round(detected / sum(f[name]["scene_screams"] for f in fold_variants), 4)
    for v in variants.values():
        assert 0.0 <= v["scene_event_recall"] <= 1.0 and v["stream_false_alarms"] >= 0
    as_recorded = report["conditions"]["as recorded"]
    assert (as_recorded["screams"], as_recorded["non_screams"]) == (45, 45)
    assert as_recorded["fold_mean_roc_auc"] == pytest.approx(mean_roc, abs=1e-4)  # "as recorded" is the fold itself
    families = report["negative_families"]
    assert sum(f["clips"] for f in families.values()) == 45 and "false_alarm_rate" not in next(iter(families.values()))
    assert sum(s["screams"] + s["non_screams"] for s in report["sources"].values()) == 90
    text = (out / "report.md").read_text()
    assert "## Pooled out of fold" in text and "| 2 | " in text and "<= 0.5" in text
    assert "| mean of 3 windows | " in text
    # The headline pools the folds' scene curves: each fold's curve is in its own report.
    from train.scenes import curve_headline

    curves = [json.loads((out / f"fold-{k}-report" / "report.json").read_text())["scene_curve"] for k in range(3)]
    assert report["headline"] == curve_headline(curves) and report["headline"]["screams"] == 45
    assert report["headline_audited"] is None and "Among the" not in text  # synthetic clips have no audit
    assert report["split_by"] == "group" and report["level_spread_db"] == 0.0
    assert "event recall at <= 2 false alarms/h" in text

    # Run again: every fold model is reused, and the pooled numbers are the same.
    model_bytes = (out / "fold-1.tflite").read_bytes()
    (out / "fold-1.tflite").unlink()
    capsys.readouterr()
    again = crossval(data, out, folds=3, config=replace(config, cache_dir=str(tmp_path / "c2")), scenes=1)
    log = capsys.readouterr().out
    assert [r["trained_this_run"] for r in again["fold_rows"]] == [False, True, False]
    assert "fold 1 of 3: reusing" in log and "fold 2 of 3: training" in log
    assert (out / "fold-1.tflite").read_bytes() == model_bytes  # seeded: the retrained fold is the same model
    assert again["pooled"] == report["pooled"]
    # Evaluated again at a site's hop: the same fold models, nothing trained, every fold decided at it.
    hop_out = tmp_path / "cv-hop"
    shutil.copytree(out, hop_out)
    at_hop = crossval(data, hop_out, folds=3, config=config, scenes=1, hop_ms=100)
    assert not any(r["trained_this_run"] for r in at_hop["fold_rows"]) and at_hop["hop_ms"] == 100
    for k in range(3):
        decisions = json.loads((hop_out / f"fold-{k}-report" / "report.json").read_text())["model"]["decisions"]
        assert decisions["hop_ms"] == 100 != decisions["model_hop_ms"]
    assert at_hop["pooled"]["windows"] == report["pooled"]["windows"]  # the clips' windows keep the model's hop
    assert "decided with `[detector] hop_ms = 100`" in (hop_out / "report.md").read_text()
    assert report["hop_ms"] is None
    # Against a baseline run: a copy of this one whose fold 1 is fold 0's model (trained without
    # fold 1 too) and whose sidecars say another epoch count.
    base = tmp_path / "baseline"
    shutil.copytree(out, base)
    for suffix in (".tflite", ".json"):
        shutil.copy(out / f"fold-0{suffix}", base / f"fold-1{suffix}")
    for k in range(3):
        sidecar = json.loads((base / f"fold-{k}.json").read_text())
        sidecar["training"]["config"]["epochs"] = 99
        (base / f"fold-{k}.json").write_text(json.dumps(sidecar))
    compared = crossval(data, out, folds=3, config=config, scenes=1, baseline=base)
    against = compared["baseline"]
    assert against["recipe_differences"] == {"epochs": [config.epochs, 99]}
    assert compared["pooled"] == report["pooled"]  # the baseline changes nothing of this run's numbers
    fold_against = [json.loads((out / f"fold-{k}-report" / "report.json").read_text())["baseline"] for k in range(3)]
    assert fold_against[1]["sha256"] == fold_against[0]["sha256"] != fold_against[2]["sha256"]
    for k in (0, 2):  # the same model on both sides: no difference, not even in a resample
        assert all(r["difference"] == 0 and r["interval_95"] == [0, 0] for r in fold_against[k]["windows"].values())
    assert against["stream_false_alarms"] == sum(f["stream_false_alarms"] for f in fold_against)
    assert against["model_stream_false_alarms"] == report["pooled"]["stream"]["false_alarms"]
    for key in ("roc_auc", "pr_auc", "recall_at_1pct_fpr", "recall_at_5pct_fpr"):
        row = against["windows"][key]
        assert row["model"] == report["pooled"]["windows"][key]
        assert row["difference"] == pytest.approx(row["model"] - row["baseline"], abs=2e-4)
        assert row["interval_95"][0] <= row["difference"] <= row["interval_95"][1]
    assert against["clips"]["roc_auc"]["model"] == report["pooled"]["clips_ranking"]["roc_auc"]
    # Fold 1's baseline numbers are fold 0's model's on fold 1, as `scream evaluate` scores it on its
    # own (whether or not two tiny models happen to rank the clips alike).
    from train.evaluate import evaluate

    alone = evaluate(
        base / "fold-1.tflite",
        data,
        out_dir=tmp_path / "alone",
        splits_file=out / "fold-1-run" / "splits.tsv",
        cache_dir=config.cache_dir,
        scenes=1,
        make_plots=False,
    )
    for key in ("roc_auc", "pr_auc", "recall_at_1pct_fpr"):
        assert fold_against[1]["windows"][key]["baseline"] == pytest.approx(alone["windows"][key], abs=1e-4)
    text = (out / "report.md").read_text()
    assert f"## Against the baseline recipe `{base}`" in text and f"epochs {config.epochs} (baseline 99)" in text
    headline = against["headline"]
    assert headline["model"] == report["headline"]  # the same scenes, so this run's own headline
    assert headline["baseline"] == curve_headline([f["scene_curve"] for f in fold_against])
    for budget in (2, 5):
        row = headline[f"recall_at_{budget}_fa_per_hour"]
        expected = (
            headline["model"][f"recall_at_{budget}_fa_per_hour"]
            - headline["baseline"][f"recall_at_{budget}_fa_per_hour"]
        )
        assert row["difference"] == pytest.approx(expected, abs=2e-4)
        assert row["interval_95"][0] <= row["difference"] <= row["interval_95"][1]
    assert "paired over scream sources" in text
    # `scream crossval-pool` reads this run back as crossval wrote it: its fold curves, its baseline's
    # curves, and the baseline's recipe from the differences the report lists.
    from train.pool import load_run

    run = load_run(out)
    assert run.curves == [
        json.loads((out / f"fold-{k}-report" / "report.json").read_text())["scene_curve"] for k in range(3)
    ]
    assert run.baseline_curves == [f["scene_curve"] for f in fold_against]
    assert run.baseline_recipe == {**compared["recipe"], "epochs": 99} and run.seed == 0
    # A baseline without every fold, or dealt other folds, is refused before anything runs.
    (base / "fold-2.tflite").unlink()
    with pytest.raises(DataError, match=r"no fold-2\.tflite"):
        crossval(data, tmp_path / "unused", folds=3, config=config, baseline=base)
    shutil.copy(out / "fold-2.tflite", base / "fold-2.tflite")
    shutil.copy(base / "fold-0-run" / "splits.tsv", base / "fold-2-run" / "splits.tsv")
    with pytest.raises(DataError, match="fold-2 tests other clips"):
        crossval(data, tmp_path / "unused", folds=3, config=config, baseline=base)
    assert not (tmp_path / "unused" / "fold-0.tflite").exists()

    # Another recipe, or a data set that now deals another fold, is not reused.
    dataset = load_dataset(data)
    fold_0 = group_folds(dataset.clips, 3, seed=0)[0]
    assert reusable(out / "fold-0.tflite", replace(config, folds=3, fold=0, verbose=2), fold_0, dataset.base)
    assert not reusable(out / "fold-0.tflite", replace(config, folds=3, fold=0, width=4), fold_0, dataset.base)
    assert not reusable(out / "fold-0.tflite", replace(config, folds=3, fold=0), fold_0[1:], dataset.base)
    # A sidecar written before a recipe field existed counts as that field's default.
    sidecar = json.loads((out / "fold-0.json").read_text())
    del sidecar["training"]["config"]["split_by"]
    (out / "fold-0.json").write_text(json.dumps(sidecar))
    assert reusable(out / "fold-0.tflite", replace(config, folds=3, fold=0), fold_0, dataset.base)
    # A field recipes no longer have counts at the value that meant "off", and only there.
    sidecar["training"]["config"]["splice_fraction"] = 0.0
    (out / "fold-0.json").write_text(json.dumps(sidecar))
    assert reusable(out / "fold-0.tflite", replace(config, folds=3, fold=0), fold_0, dataset.base)
    sidecar["training"]["config"]["splice_fraction"] = 0.2
    (out / "fold-0.json").write_text(json.dumps(sidecar))
    assert not reusable(out / "fold-0.tflite", replace(config, folds=3, fold=0), fold_0, dataset.base)
    # The teacher's path and target count only in a recipe that distils (nothing else reads them).
    trained = sidecar["training"]["config"]
    assert trained["distill_weight"] == 0
    trained.update(splice_fraction=0.0, teacher_dir="/elsewhere/yamnet", distill_target="scores")
    (out / "fold-0.json").write_text(json.dumps(sidecar))
    assert reusable(out / "fold-0.tflite", replace(config, folds=3, fold=0), fold_0, dataset.base)
    trained["distill_weight"] = 1.0
    (out / "fold-0.json").write_text(json.dumps(sidecar))
    distilled = replace(config, folds=3, fold=0, distill_weight=1.0)
    assert not reusable(out / "fold-0.tflite", distilled, fold_0, dataset.base)
    elsewhere = replace(distilled, teacher_dir="/elsewhere/yamnet", distill_target="scores")
    assert reusable(out / "fold-0.tflite", elsewhere, fold_0, dataset.base)
    (out / "fold-0.json").write_text("{")
    assert not reusable(out / "fold-0.tflite", replace(config, folds=3, fold=0), fold_0, dataset.base)


def test_crossval_command_takes_the_train_recipe_options() -> None:
    args = build_parser().parse_args(
        ["crossval", "--data", "d", "--out", "o", "--folds", "4", "--members", "2", "--epochs", "7", "--scenes", "2"]
    )
    assert (args.folds, args.members, args.epochs, args.scenes, args.width) == (4, 2, 7, 2, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["crossval", "--data", "d", "--out", "o", "--scenes", "0"])


def test_a_baseline_cut_into_other_windows_is_paired_on_clips_and_scenes_only() -> None:
    from train.crossval import FoldResult, pooled_baseline

    def fold(k: int, base_windows: bool) -> FoldResult:
        rng = np.random.default_rng(k)  # the same scores whichever side lacks windows
        labels = np.arange(40) % 2 == 0
        windows = rng.random(40)
        curve = {
            "decisions": "1 of 1 window",
            "hours": 1.0,
            "sources": ["a", "b"],
            "rows": [{"on": 0.9, "false_alarms": 1, "hits": [1, 0]}],
        }
        report = {
            "scene_curve": curve,
            "stream": {"false_alarms": 2, "hours": 1.0},
            "baseline": {"scene_curve": curve, "stream_false_alarms": 3, "window_cut": "48 frames every 25"},
        }
        return FoldResult(
            fold=k,
            report=report,
            sidecar={},
            window_labels=labels,
            window_scores=rng.random(40),
            window_groups=np.array([f"g{k}-{i % 8}" for i in range(40)]),
            clip_labels=labels[:10],
            clip_scores=rng.random(10),
            clip_groups=np.array([f"g{k}-{i % 8}" for i in range(10)]),
            trained_now=False,
            baseline_window_scores=windows if base_windows else None,
            baseline_clip_scores=rng.random(10),
        )

    paired = pooled_baseline([fold(0, True), fold(1, True)], Path("b"), {}, {}, seed=0)
    assert paired["windows"]["roc_auc"]["interval_95"] is not None
    other_cut = pooled_baseline([fold(0, False), fold(1, True)], Path("b"), {}, {}, seed=0)
    assert other_cut["windows"] is None and other_cut["window_cut"] == "48 frames every 25"
    assert other_cut["clips"] == paired["clips"] is not None  # clips and scenes stay paired
    assert other_cut["headline"]["recall_at_2_fa_per_hour"]["difference"] == 0.0
    assert (other_cut["stream_false_alarms"], other_cut["model_stream_false_alarms"]) == (6, 4)


def test_recipe_options_reach_the_train_config() -> None:
    from train.cli import _train_config
    from train.pipeline import TrainConfig

    def config(*options: str) -> TrainConfig:
        return _train_config(build_parser().parse_args(["crossval", "--data", "d", "--out", "o", *options]))

    plain = config()
    assert (plain.onset_window_fraction, plain.distill_target, plain.members) == (0.3, "embedding", 3)
    changed = config("--onset-fraction", "0.6", "--distill-weight", "20", "--distill-target", "scores")
    assert (changed.onset_window_fraction, changed.distill_weight, changed.distill_target) == (0.6, 20.0, "scores")
    assert (plain.seed, plain.effective_split_seed, plain.window_frames) == (0, 0, 96)
    assert config("--window-frames", "64").window_frames == 64
    assert (plain.head, config("--head", "mean-max").head, config("--head", "frequency").head) == (
        "global",
        "mean-max",
        "frequency",
    )
    assert (plain.output_logit_max, config("--output-logit-max", "3").output_logit_max) == (0.0, 3.0)
    again = config("--seed", "1", "--split-seed", "0")
    assert (again.seed, again.effective_split_seed) == (1, 0)
    assert config("--seed", "3").effective_split_seed == 3
    for wrong in (
        ["--onset-fraction", "1.5"],
        ["--distill-target", "logits"],
        ["--window-frames", "8"],
        ["--head", "attention"],
    ):
        with pytest.raises(SystemExit):
            config(*wrong)


@pytest.mark.parametrize("command", ["crossval", "adapt"])
def test_the_training_commands_hand_their_options_over(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each command's handler runs to the function it wraps with what was parsed (a handler once
    passed adapt's options to crossval, and `scream crossval` died on an AttributeError)."""
    import train.adapt
    import train.crossval
    from edge.cli import main

    seen: dict[str, object] = {}

    def fake_crossval(data: str, out: str, **kwargs: object) -> dict[str, object]:
        seen.update(kwargs, data=data, out=out)
        return {}

    def fake_adapt(model: str, site: str, corpus: str, out: str, *, config: object) -> dict[str, object]:
        seen.update(model=model, site=site, corpus=corpus, out=out, config=config)
        before = {"false_alarms_per_hour": 1.0, "event_recall": 0.5}
        after = {"false_alarms_per_hour": 0.8, "event_recall": 0.55}
        return {"site": {"before": before, "after": after}, "corpus": {"before": before, "after": after}}

    monkeypatch.setattr(train.crossval, "crossval", fake_crossval)
    monkeypatch.setattr(train.adapt, "adapt", fake_adapt)
    if command == "crossval":
        assert main(["crossval", "--data", "d", "--out", "o", "--folds", "4", "--by", "source", "--scenes", "2"]) == 0
        assert (seen["data"], seen["out"], seen["folds"], seen["scenes"]) == ("d", "o", 4, 2)
        assert seen["config"].split_by == "source"  # type: ignore[attr-defined]
        assert seen["config"].min_teacher_scream == 0.0  # type: ignore[attr-defined]
        assert main(["crossval", "--data", "d", "--out", "o", "--min-teacher-scream", "0.05"]) == 0
        assert seen["config"].min_teacher_scream == 0.05  # type: ignore[attr-defined]
        assert seen["config"].teacher_hard_negative == 0.0  # type: ignore[attr-defined]
        assert main(["crossval", "--data", "d", "--out", "o", "--teacher-hard-negatives", "0.02"]) == 0
        assert seen["config"].teacher_hard_negative == 0.02  # type: ignore[attr-defined]
        assert seen["hop_ms"] == 0
        assert main(["crossval", "--data", "d", "--out", "o", "--hop-ms", "100"]) == 0
        assert seen["hop_ms"] == 100
    else:
        argv = ["adapt", "--model", "m.tflite", "--site", "s", "--corpus", "c", "--out", "models/x.tflite"]
        from train.adapt import OPERATING_POINTS, AdaptConfig

        assert main([*argv, "--train", "all", "--keep", "base", "--max-false-alarm-rise", "0.5"]) == 0
        assert "corpus scenes: recall 0.5 -> 0.55 at 1.0 -> 0.8 false alarms/h" in capsys.readouterr().out
        config = seen["config"]
        assert seen["out"] == "models/x" and (config.train, config.keep) == ("all", "base")  # type: ignore[attr-defined]
        assert config.max_false_alarm_rise == 0.5  # type: ignore[attr-defined]
        assert main(argv) == 0
        assert seen["config"] == AdaptConfig()  # the command line's defaults are adapt's own
        for choice in OPERATING_POINTS:  # the command line offers every one adapt knows
            assert main([*argv, "--operating-point", choice]) == 0
            assert seen["config"].operating_point == choice  # type: ignore[attr-defined]


def test_crossval_refuses_more_folds_than_groups_before_training(tmp_path: Path) -> None:
    from train.crossval import crossval
    from train.pipeline import TrainConfig

    data = make_synthetic_dataset(tmp_path / "data", per_class=8)
    with pytest.raises(DataError, match="has 8 groups; 9 folds need at least one group each"):
        crossval(data, tmp_path / "cv", folds=9, config=TrainConfig(cache_dir=str(tmp_path / "c")))
    assert list((tmp_path / "cv").iterdir()) == []
