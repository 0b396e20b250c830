"""The teacher row: a crossval's folds and scenes rebuilt exactly, scored by a teacher through the
live windows and decisions, paired with the crossval's own fold models (a stand-in teacher here)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.classifier import Classifier
from edge.features import FeatureParams
from edge.pipeline import WindowScore, detection_settings
from train.corpus.teacher import WINDOW_SAMPLES, TeacherScores, clip_windows
from train.data import DataError
from train.scenes import StreamScores

pytest.importorskip("scipy")


class PitchTeacher:
    """A deterministic stand-in for YAMNet: a 32-band log spectrum as the embedding, and as its
    "Screaming" score the share of energy between 1 and 4 kHz (where the synthetic screams sit)."""

    identity = "pitch-teacher:1"

    def __init__(self) -> None:
        self.class_names = ["Speech", "Screaming"]
        self.windows = 0

    def analyse(self, samples: np.ndarray) -> TeacherScores:
        scores, embeddings = [], []
        for window in clip_windows(samples):
            self.windows += 1
            spectrum = np.abs(np.fft.rfft(window)) ** 2 + 1e-9
            hz = np.fft.rfftfreq(window.size, 1 / 16000)
            share = float(spectrum[(hz >= 1000) & (hz < 4000)].sum() / spectrum.sum())
            bands = np.log(np.array([b.sum() for b in np.array_split(spectrum, 32)]))
            bands -= bands.mean()
            embeddings.append(bands / (np.linalg.norm(bands) + 1e-9))
            scores.append([1 - share, share])
        stack = np.array(scores, dtype=np.float32)
        mean = np.mean(embeddings, axis=0)
        return TeacherScores(stack.max(axis=0), stack.mean(axis=0), (mean / np.linalg.norm(mean)).astype(np.float32))


def test_the_teacher_sees_the_windows_the_live_path_scores(tiny_model: Path) -> None:
    from train.scenes import score_stream
    from train.teacher_row import window_grid

    classifier = Classifier(tiny_model, expected_features=FeatureParams())
    side = classifier.sidecar
    _, hop = detection_settings(side)
    rng = np.random.default_rng(4)
    audio = (rng.standard_normal(16000 * 7 + 123) * np.linspace(0.001, 0.3, 16000 * 7 + 123)).astype(np.float32)
    live = score_stream(classifier, audio).windows
    grid = window_grid(audio, side.features, side.window_frames, hop)
    assert len(grid) == len(live) > 20
    assert [(w.index, w.start_s, w.end_s, w.level_dbfs) for w in grid] == [
        (w.index, w.start_s, w.end_s, w.level_dbfs) for w in live
    ]
    assert grid[0].end_s - grid[0].start_s == pytest.approx(WINDOW_SAMPLES / 16000)


def test_an_excerpt_is_the_teachers_window_with_silence_past_the_end() -> None:
    from train.teacher_row import excerpt

    audio = np.arange(20000, dtype=np.float32)
    inside = excerpt(audio, 100)
    assert inside.shape == (WINDOW_SAMPLES,) and inside[0] == 100 and inside[-1] == 100 + WINDOW_SAMPLES - 1
    tail = excerpt(audio, 19000)
    assert tail[:1000].tolist() == list(range(19000, 20000)) and not tail[1000:].any()


def test_the_head_is_the_balanced_l2_logistic_optimum() -> None:
    from scipy.special import expit

    from train.teacher_row import fit_logistic

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 6)).astype(np.float32)
    y = x[:, 0] + 0.3 * rng.standard_normal(300) > 1.0  # about one in six positive
    for c in (0.05, 1.0):
        head = fit_logistic(x, y, c)
        weight = np.where(y, y.size / (2 * y.sum()), y.size / (2 * (~y).sum()))
        residual = c * weight * (expit(x.astype(np.float64) @ head.coef + head.intercept) - y)
        # At the optimum the gradient vanishes: C * X^T r + w = 0 and sum(r) = 0.
        np.testing.assert_allclose(x.T @ residual + head.coef, 0.0, atol=2e-4)
        assert abs(residual.sum()) < 2e-4
        assert head.coef[0] > 5 * np.abs(head.coef[1:]).max()  # it found the one informative dimension
    tiny = fit_logistic(x, y, 1e-8)  # all regularisation: no slope, and balanced classes mean even odds
    assert np.abs(tiny.coef).max() < 1e-4 and abs(tiny.intercept) < 1e-4
    assert tiny.score(x[:3]) == pytest.approx([0.5, 0.5, 0.5], abs=1e-4)


def test_the_mlp_head_learns_what_no_line_separates() -> None:
    from train import metrics
    from train.teacher_row import fit_head, fit_logistic, fit_mlp

    rng = np.random.default_rng(1)
    x = rng.standard_normal((600, 8)).astype(np.float32)
    y = (x[:, 0] > 0) ^ (x[:, 1] > 0)  # XOR of two signs: no linear score ranks it
    x_val = rng.standard_normal((400, 8)).astype(np.float32)
    y_val = (x_val[:, 0] > 0) ^ (x_val[:, 1] > 0)
    assert metrics.roc_auc(y_val, fit_logistic(x, y, 1.0).score(x_val)) < 0.65
    mlp = fit_mlp(x, y, 1.0)
    assert metrics.roc_auc(y_val, mlp.score(x_val)) > 0.95
    assert mlp.w1.shape == (8, 32) and mlp.c == 1.0
    np.testing.assert_array_equal(fit_mlp(x, y, 1.0).w1, mlp.w1)  # seeded: the same head each time
    head, tried = fit_head((x, y), (x_val, y_val), (0.01, 1.0), "mlp")
    assert set(tried) == {"0.01", "1"} and head.c == max((0.01, 1.0), key=lambda c: tried[f"{c:g}"])
    with pytest.raises(ValueError, match="head kind must be one of logistic, mlp"):
        fit_head((x, y), (x_val, y_val), (1.0,), "forest")


def _manifest_with_sources(data: Path, sources: int) -> Path:
    with (data / "manifest.tsv").open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["path", "label", "group", "source", "teacher_scream"])
        for k, path in enumerate(sorted(data.rglob("*.wav"))):
            # An audit as the corpus builder writes it: every third clip one the teacher rejects.
            audit = "0.01" if k % 3 == 0 else "0.5"
            row = [path.relative_to(data).as_posix(), path.parent.name, path.stem, f"source-{k % sources}", audit]
            writer.writerow(row)
    return data / "manifest.tsv"


@pytest.fixture(scope="module")
def crossval_folder(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> tuple[Path, Path, Path]:
    """A leave-source-out crossval folder made of the real parts `scream crossval` writes: the
    folds dealt by `fold_splits`, each fold's model (the tiny one) evaluated by `evaluate_with_scores`
    on its test split, and the pooled headline of those fold reports."""
    from tests.helpers import make_synthetic_dataset
    from train.data import load_dataset, regroup
    from train.evaluate import evaluate_with_scores
    from train.scenes import curve_headline
    from train.splits import fold_splits, write_splits

    root = tmp_path_factory.mktemp("teacher-row")
    data = make_synthetic_dataset(root / "data", per_class=24, seed=5)
    manifest = _manifest_with_sources(data, 6)
    cv, cache = root / "cv", root / "cache"
    cv.mkdir()
    dataset = regroup(load_dataset(manifest), "source")
    curves = []
    for k in range(3):
        (cv / f"fold-{k}-run").mkdir()
        write_splits(
            fold_splits(dataset.clips, 3, k, balance_screams=True), cv / f"fold-{k}-run" / "splits.tsv", dataset.base
        )
        for suffix in (".tflite", ".json"):
            shutil.copyfile(tiny_model.with_suffix(suffix), cv / f"fold-{k}{suffix}")
        evaluation = evaluate_with_scores(
            cv / f"fold-{k}.tflite",
            manifest,
            out_dir=cv / f"fold-{k}-report",
            splits_file=cv / f"fold-{k}-run" / "splits.tsv",
            cache_dir=str(cache),
            seed=0,
            scenes=2,
            make_plots=False,
            level_spread_db=10.0,
        )
        curves.append(evaluation.report["scene_curve"])
    report = {
        "folds": 3,
        "seed": 0,
        "scenes_per_fold": 2,
        "level_spread_db": 10.0,
        "split_by": "source",
        "headline": curve_headline(curves, seed=0),
    }
    (cv / "report.json").write_text(json.dumps(report))
    return cv, manifest, cache


def test_the_teacher_row_rebuilds_the_crossvals_scenes_and_pairs_with_its_recipe(
    crossval_folder: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from train.data import load_dataset
    from train.teacher_row import CASCADES, ROWS, teacher_row

    cv, manifest, cache = crossval_folder
    teacher = PitchTeacher()
    report = teacher_row(cv, manifest, tmp_path / "out", teacher, cache_dir=str(cache))
    # The fold models scored again on the rebuilt scenes give the crossval's own headline: the same
    # clips, orderings, levels and inserted screams.
    assert report["crossval_recipe"]["reproduces_crossval_headline"] is True
    assert report["crossval_recipe"]["headline"] == json.loads((cv / "report.json").read_text())["headline"]
    assert report["settings"] == {"folds": 3, "seed": 0, "scenes": 2, "level_spread_db": 10.0, "split_by": "source"}
    screams = report["crossval_recipe"]["headline"]["screams"]
    assert screams == 2 * 24  # every scream inserted once per scene, two scenes
    assert list(report["rows"]) == [*ROWS, *CASCADES]
    for row in report["rows"]:
        block = report["rows"][row]
        assert block["headline"]["screams"] == screams and len(block["curves"]) == 3
        assert set(block["paired_with_crossval"]) >= {"model", "baseline", "recall_at_2_fa_per_hour"}
        assert block["paired_with_crossval"]["baseline"] == report["crossval_recipe"]["headline"]
    # The stand-in's scream band tells the synthetic screams from room tone, babble and beeps.
    assert report["rows"]["yamnet-screaming"]["clip_roc_auc"] > 0.9
    assert report["rows"]["yamnet-head"]["clip_roc_auc"] > 0.9
    assert [f["fold"] for f in report["folds"]] == [0, 1, 2]
    assert all(f["head_c"] in (0.01, 0.1, 1.0) and len(f["head_validation_pr_auc"]) == 3 for f in report["folds"])
    assert report["windows_scored"] == teacher.windows and report["windows_scored"] + report["windows_read"] > 0
    # Run again (another head, other attempts would do the same): the teacher's windows are read from
    # beside the waveform cache, nothing is scored twice, and every row comes out the same.
    again_teacher = PitchTeacher()
    again = teacher_row(cv, manifest, tmp_path / "again", again_teacher, cache_dir=str(cache))
    assert again_teacher.windows == again["windows_scored"] == 0
    assert again["windows_read"] == report["windows_scored"] + report["windows_read"]
    assert again["rows"] == report["rows"] and again["losses"] == report["losses"]
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["rows"]["yamnet-head"]["headline"] == report["rows"]["yamnet-head"]["headline"]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| yamnet-head |" in markdown and "| crossval recipe |" in markdown
    assert "| crossval-recipe verified by yamnet-screaming |" in markdown
    assert all(report["rows"][name]["clip_roc_auc"] is None for name in CASCADES)
    assert "exactly the headline of its report" in markdown
    # The two second stages paired with each other on the same candidates and screams.
    both = report["head_minus_screaming_verified"]
    head_cascade, screaming_cascade = (
        report["rows"][f"crossval-recipe verified by {r}"]["headline"] for r in ROWS[::-1]
    )
    assert (both["model"], both["baseline"]) == (head_cascade, screaming_cascade)
    for budget in (2, 5):
        key = f"recall_at_{budget}_fa_per_hour"
        assert both[key]["difference"] == pytest.approx(head_cascade[key] - screaming_cascade[key], abs=2e-4)
    assert "The two second stages paired (the recipe's events verified by the head minus" in markdown
    # The same rows over only the screams the audit keeps, each paired with the recipe on them.
    kept = 2 * sum(c.is_scream and (c.teacher_scream or 0) >= 0.05 for c in load_dataset(manifest).clips)
    assert 0 < kept < screams
    for row in report["rows"]:
        audited = report["rows"][row]["audited_paired_with_crossval"]
        assert (audited["at"], audited["of"], audited["model"]["screams"]) == (0.05, screams, kept)
    assert f"Over only the {kept} of {screams} inserted screams whose teacher audit" in markdown
    # Where each cascade loses screams, at the very points its headline counts.
    families = {c.family for c in load_dataset(manifest).clips if not c.is_scream}
    onsets = 0
    for name in CASCADES:
        curves = report["rows"][name]["curves"]
        for budget in (2, 5):
            losses = report["losses"][name][f"{budget}"]
            headline = report["rows"][name]["headline"]
            assert losses["screams"] == screams == sum(losses["outcomes"].values())
            assert losses["outcomes"]["found"] == round(headline[f"recall_at_{budget}_fa_per_hour"] * screams)
            points = [p for p in losses["points"] if p is not None]
            assert losses["outcomes"]["found"] == sum(p["found"] for p in points)
            assert losses["false_alarms"] == sum(p["false_alarms"] for p in points)
            assert losses["false_alarms"] <= budget * sum(c["hours"] for c in curves)
            assert sum(losses["false_alarms_by_family"].values()) == losses["false_alarms"]
            assert set(losses["false_alarms_by_family"]) <= families
            assert sum(losses["false_alarms_by_category"].values()) == losses["false_alarms"]
            for key in ("by_teacher_audit", "by_snr_db"):
                assert sum(sum(o.values()) for o in losses[key].values()) == screams
            assert sum(sum(o.values()) for b, o in losses["by_teacher_audit"].items() if b != "< 0.05") == kept
            median = headline[f"median_onset_at_{budget}_fa_per_hour_s"]
            assert (median is None) == (losses["onset"]["median_onset_s"] is None)
            if median is not None:
                assert losses["onset"]["median_onset_s"] == pytest.approx(median, abs=0.01)
                onsets += 1
    assert onsets > 0  # some point found screams, so their onsets were split and checked
    assert "## Where the cascades lose screams" in markdown
    assert "By teacher audit (`teacher_scream`) at <= 5 FA/h" in markdown


def test_the_head_can_be_fitted_with_the_screams_the_audit_left_out(
    crossval_folder: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from train.data import load_dataset, regroup
    from train.pipeline import audited_splits
    from train.splits import fold_splits, write_splits
    from train.teacher_row import audit_left_out, crossval_settings, fold_model, teacher_row

    cv, manifest, cache = crossval_folder
    dataset = load_dataset(manifest)
    settings = crossval_settings(cv)
    # The fixture's splits files name every clip: nothing was left out.
    assert audit_left_out(dataset, settings, 0, fold_model(cv, 0, dataset, ("train", "validation", "test"))[1]) == []
    # A crossval with `--min-teacher-scream 0.05` writes the splits without the screams it rejects.
    audited = tmp_path / "audited"
    shutil.copytree(cv, audited)
    dropped = []
    for k in range(3):
        dealt = fold_splits(regroup(dataset, "source").clips, 3, k, balance_screams=True)
        kept, _ = audited_splits(dealt, 0.05)
        write_splits(kept, audited / f"fold-{k}-run" / "splits.tsv", dataset.base)
        split = fold_model(audited, k, dataset, ("train", "validation", "test"))[1]
        left_out = audit_left_out(dataset, settings, k, split)
        expected = [c for c in dealt["train"] if c not in kept["train"]]
        assert [c.path for c in left_out] == [c.path for c in expected]
        assert all(c.is_scream and c.teacher_scream == 0.01 for c in left_out)
        dropped.append((sum(c.is_scream for c in kept["train"]), len(left_out)))
    assert sum(n for _, n in dropped) > 0
    both = teacher_row(audited, manifest, tmp_path / "all", PitchTeacher(), cache_dir=str(cache), head_screams="all")
    only = teacher_row(audited, manifest, tmp_path / "only", PitchTeacher(), cache_dir=str(cache))
    assert [f["head_train_screams"] for f in both["folds"]] == [a + b for a, b in dropped]
    assert [f["head_train_screams"] for f in only["folds"]] == [a for a, _ in dropped]
    assert (both["head_screams"], only["head_screams"]) == ("all", "audited")
    # The student's rows do not depend on the head.
    assert both["crossval_recipe"] == only["crossval_recipe"]
    # Another head seed draws other mixtures: new windows for the teacher, the same student rows.
    seeded = teacher_row(audited, manifest, tmp_path / "seeded", PitchTeacher(), cache_dir=str(cache), head_seed=1)
    assert (seeded["head_seed"], only["head_seed"]) == (1, 0)
    assert seeded["windows_scored"] > 0 and seeded["crossval_recipe"] == only["crossval_recipe"]
    assert (
        teacher_row(audited, manifest, tmp_path / "again", PitchTeacher(), cache_dir=str(cache))["windows_scored"] == 0
    )
    with pytest.raises(ValueError, match="head_screams must be one of audited, all"):
        teacher_row(audited, manifest, tmp_path / "x", PitchTeacher(), cache_dir=str(cache), head_screams="some")
    # Another deal than the splits file's is refused, not guessed at.
    other = dict(settings, split_seed=settings["split_seed"] + 1)
    split = fold_model(audited, 0, dataset, ("train", "validation", "test"))[1]
    with pytest.raises(DataError, match="fold 0 dealt again does not test the clips its splits file names"):
        audit_left_out(dataset, other, 0, split)


def test_the_heads_examples_can_mix_more_screams_and_the_non_screams_too(
    crossval_folder: tuple[Path, Path, Path],
) -> None:
    from train.data import WaveformCache, load_dataset
    from train.teacher_row import TeacherWindows, head_examples

    _, manifest, cache = crossval_folder
    clips = load_dataset(manifest).clips
    waves = WaveformCache(cache, 16000)
    windows = TeacherWindows(PitchTeacher())

    def examples(**options: int) -> tuple[np.ndarray, np.ndarray]:
        return head_examples(windows, clips, waves, np.random.default_rng(7), **options)

    x, y = examples()
    screams = [c for c in clips if c.is_scream]
    others = len(clips) - len(screams)
    loud = (int(y.sum())) // 2  # each loud scream window clean and mixed once
    assert y.sum() == 2 * loud and loud >= len(screams)
    _, y3 = examples(mixes=3)
    assert y3.sum() == 4 * loud and (~y3).sum() == (~y).sum()
    # The non-screams mixed twice each come after every example the default draws, which stay as they were.
    xn, yn = examples(negative_mixes=2)
    assert (~yn).sum() == (~y).sum() + 2 * others and yn.sum() == y.sum()
    np.testing.assert_array_equal(xn[: y.size], x)
    assert not yn[y.size :].any()
    # Mixed, a non-scream is other audio than any clean window of it.
    assert not np.isclose(xn[y.size :, None, :], x[None, ~y, :]).all(axis=2).any()


def test_a_clip_is_scored_by_the_teacher_once_however_many_folds_use_it(
    crossval_folder: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from train.data import WaveformCache, load_dataset
    from train.teacher_row import TeacherWindows

    _, manifest, cache = crossval_folder
    clip = load_dataset(manifest).clips[0]
    wave = WaveformCache(cache, 16000).load(clip.path)
    teacher = PitchTeacher()
    windows = TeacherWindows(teacher)
    first = windows.clip(clip, wave)
    again = windows.clip(clip, wave)
    assert teacher.windows == len(clip_windows(wave)) and all(a is b for a, b in zip(first, again, strict=True))


def test_the_teachers_windows_are_kept_by_their_samples_and_the_teachers_identity(tmp_path: Path) -> None:
    from train.teacher_row import TeacherWindows

    rng = np.random.default_rng(3)
    batch = [rng.standard_normal(WINDOW_SAMPLES).astype(np.float32) * 0.1 for _ in range(3)]
    teacher = PitchTeacher()
    scores, embeddings = TeacherWindows(teacher, store=tmp_path).windows(batch)
    assert teacher.windows == 3
    reader = TeacherWindows(teacher, store=tmp_path)
    read_scores, read_embeddings = reader.windows(batch)
    assert teacher.windows == 3 and reader.windows_read == 3 and reader.windows_scored == 0
    np.testing.assert_array_equal(read_scores, scores)
    np.testing.assert_array_equal(read_embeddings, embeddings)
    # Other samples (one changed by a step too small to see) or another teacher are scored anew.
    nudged = [batch[0], batch[1], np.nextafter(batch[2], np.float32(1))]
    reader.windows(nudged)
    assert teacher.windows == 6
    other = PitchTeacher()
    other.identity = "pitch-teacher:2"
    TeacherWindows(other, store=tmp_path).windows(batch)
    assert other.windows == 3
    # A torn file is scored again and replaced.
    for path in tmp_path.rglob("*.npz"):
        path.write_bytes(b"torn")
    fresh = PitchTeacher()
    again = TeacherWindows(fresh, store=tmp_path)
    np.testing.assert_array_equal(again.windows(batch)[1], embeddings)
    assert fresh.windows == 3 and again.windows_read == 0
    assert TeacherWindows(fresh, store=tmp_path).windows(batch)[0].tolist() == scores.tolist() and fresh.windows == 3


def test_a_crossval_folder_that_does_not_fit_the_data_is_refused(
    crossval_folder: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from tests.helpers import make_synthetic_dataset
    from train.teacher_row import teacher_row

    cv, manifest, cache = crossval_folder
    with pytest.raises(DataError, match=r"report.json: not a `scream crossval` report"):
        teacher_row(tmp_path, manifest, tmp_path / "out", PitchTeacher())
    broken = tmp_path / "broken"
    shutil.copytree(cv, broken, ignore=shutil.ignore_patterns("fold-1.tflite"))
    with pytest.raises(DataError, match=r"broken: fold 1 is incomplete \(model file .*fold-1.tflite does not exist\)"):
        teacher_row(broken, manifest, tmp_path / "out", PitchTeacher(), cache_dir=str(cache))
    fewer = make_synthetic_dataset(tmp_path / "fewer", per_class=10, seed=5)
    with pytest.raises(DataError, match=r"cv: fold-0 tests clips that are not in .*fewer"):
        teacher_row(cv, _manifest_with_sources(fewer, 6), tmp_path / "out", PitchTeacher(), cache_dir=str(cache))
    assert not (tmp_path / "out" / "report.json").exists()


def test_other_audio_under_the_same_names_is_measured_but_said_not_to_be_the_crossvals(
    crossval_folder: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from tests.helpers import make_synthetic_dataset
    from train.teacher_row import teacher_row

    cv, _, _ = crossval_folder
    other = _manifest_with_sources(make_synthetic_dataset(tmp_path / "other", per_class=24, seed=9), 6)
    report = teacher_row(cv, other, tmp_path / "out", PitchTeacher(), cache_dir=str(tmp_path / "cache"))
    assert report["crossval_recipe"]["reproduces_crossval_headline"] is False
    assert "these scenes are not the ones it measured" in (tmp_path / "out" / "report.md").read_text()


def test_a_teacher_without_a_screaming_class_is_refused() -> None:
    from train.teacher_row import TeacherWindows

    teacher = PitchTeacher()
    teacher.class_names = ["Speech", "Music"]
    with pytest.raises(DataError, match="the teacher has no class 'Screaming'"):
        TeacherWindows(teacher)


def _stream(scores: list[float], hop: float = 0.25, width: float = 0.975) -> StreamScores:
    return StreamScores(
        [WindowScore(i, i * hop, i * hop + width, s, -20.0) for i, s in enumerate(scores)], len(scores) * hop + width
    )


def test_an_event_is_verified_by_the_teachers_best_window_among_those_that_raised_it() -> None:
    from train.teacher_row import verify_scores

    teacher = _stream([0.1, 0.9, 0.2, 0.3, 0.8, 0.05])
    # Raised by windows 2-3 (0.5 s to 1.725 s): window 4 (0.8) comes after and window 1 (0.9) before.
    late = (0.5, 0.75 + 0.975)
    first = (0.0, 0.975)  # window 0 alone
    assert verify_scores([late, first], teacher).tolist() == [0.3, 0.1]


def test_the_pareto_front_keeps_only_rows_that_find_more_for_their_alarms() -> None:
    from train.teacher_row import pareto_rows

    rows = [
        {"on": 1, "false_alarms": 5, "hits": [1, 1, 0]},
        {"on": 2, "false_alarms": 2, "hits": [1, 0, 0]},
        {"on": 3, "false_alarms": 2, "hits": [0, 0, 0]},
        {"on": 4, "false_alarms": 9, "hits": [1, 1, 0]},
        {"on": 5, "false_alarms": 0, "hits": [0, 0, 0]},
        {"on": 6, "false_alarms": 12, "hits": [1, 1, 1]},
    ]
    assert [r["on"] for r in pareto_rows(rows)] == [5, 2, 1, 6]


def test_a_verifier_that_passes_everything_is_the_recipe_and_one_that_passes_nothing_is_silent(
    tiny_model: Path,
) -> None:
    from edge import synth
    from train.scenes import build_scene, curve_thresholds, scene_curve, score_stream
    from train.teacher_row import cascade_curve, pareto_rows

    rng = np.random.default_rng(1)
    classifier = Classifier(tiny_model, expected_features=FeatureParams())
    decisions, _ = detection_settings(classifier.sidecar)
    background = synth.room_tone(60.0, 16000, rng, level=0.01) + synth.speech_like(60.0, 16000, rng, level=0.05)
    screams = [synth.scream_like(1.2, 16000, rng, level=0.5) for _ in range(4)]
    scene, truth = build_scene(background.astype(np.float32), screams, classifier.sidecar.features, rng)
    recipe = [(score_stream(classifier, scene), truth)]
    teacher = [(_stream([0.5] * len(recipe[0][0].windows)), truth)]
    thresholds = curve_thresholds(recipe)
    everything = cascade_curve(recipe, teacher, decisions, thresholds, [0.0])
    plain = scene_curve(recipe, decisions, thresholds)
    # The same alarms, screams found and onsets to alarm (the verifier adds no latency).
    assert [(r["false_alarms"], r["hits"], r["onset_s"]) for r in everything["rows"]] == [
        (r["false_alarms"], r["hits"], r["onset_s"]) for r in pareto_rows(plain["rows"])
    ]
    assert any(o is not None for r in everything["rows"] for o in r["onset_s"])
    assert everything["sources"] == plain["sources"] and everything["hours"] == plain["hours"]
    nothing = cascade_curve(recipe, teacher, decisions, thresholds, [0.6])
    assert [(r["false_alarms"], sum(r["hits"])) for r in nothing["rows"]] == [(0, 0)]
    assert nothing["rows"][0]["onset_s"] == [None] * len(truth)


def test_the_float_row_pairs_each_folds_float_twin_with_its_int8_model_on_the_same_scenes(
    crossval_folder: tuple[Path, Path, Path],
    tiny_training,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`scream float-row`: the int8 row is the crossval's own headline again; the float twin is scored
    on the same scenes and paired scream by scream; a fold without its twin is refused."""
    from edge.cli import EXIT_FATAL, EXIT_OK, main
    from train.float_row import ROWS

    source, manifest, cache = crossval_folder
    cv = tmp_path / "cv"
    shutil.copytree(source, cv)
    twin = tiny_training.model_path.parent / "tiny-run" / "model-float.tflite"
    for k in range(3):
        shutil.copyfile(twin, cv / f"fold-{k}-run" / "model-float.tflite")
    command = ["float-row", "--crossval", str(cv), "--data", str(manifest), "--cache", str(cache), "--out"]
    assert main([*command, str(tmp_path / "out")]) == EXIT_OK
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    printed = capsys.readouterr().out
    assert "recall at <= 2 false alarms/h: int8 " in printed and "recall at <= 5 false alarms/h" in printed
    assert report["reproduces_crossval_headline"] is True
    crossval_headline = json.loads((cv / "report.json").read_text())["headline"]
    assert report["rows"]["int8"]["headline"] == crossval_headline
    screams = crossval_headline["screams"]
    assert [report["rows"][row]["headline"]["screams"] for row in ROWS] == [screams, screams]
    paired = report["float_minus_int8"]
    assert paired["model"] == report["rows"]["float"]["headline"] and paired["baseline"] == crossval_headline
    # The twin is the same network: the two decide alike on nearly every scene window at `on`.
    assert [f["fold"] for f in report["folds"]] == [0, 1, 2]
    for fold in report["folds"]:
        assert fold["windows"] > 100 and fold["decision_agreement_at_on"] >= 0.97
        assert fold["int8_top_step"] == pytest.approx(255 / 256)
    # The float row's thresholds reach past int8's top step.
    float_ons = [row["on"] for curve in report["rows"]["float"]["curves"] for row in curve["rows"]]
    int8_ons = [row["on"] for curve in report["rows"]["int8"]["curves"] for row in curve["rows"]]
    assert max(int8_ons) <= 0.995 and len(set(float_ons)) >= len(set(int8_ons))
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| int8 |" in markdown and "| float |" in markdown and "exactly the headline" in markdown

    (cv / "fold-0-run" / "model-float.tflite").unlink()
    assert main([*command, str(tmp_path / "again")]) == EXIT_FATAL
    assert "fold 0 is incomplete" in capsys.readouterr().err


def test_curve_thresholds_reach_as_high_and_as_fine_as_asked() -> None:
    from train.scenes import curve_thresholds

    scores = np.concatenate([np.linspace(0.0, 0.9, 900), 1 - np.geomspace(1e-2, 1e-6, 100)])
    windows = [WindowScore(i, 0.0, 1.0, float(s), -20.0) for i, s in enumerate(scores)]
    scenes = [(StreamScores(windows, 10.0), [])]
    assert max(curve_thresholds(scenes)) == 0.995
    fine = curve_thresholds(scenes, top=1 - 1e-6, digits=7)
    assert max(fine) > 0.9999 and len(fine) > len(curve_thresholds(scenes))


def test_a_headline_reproduces_on_every_field_its_report_has() -> None:
    """A crossval report written before the median-onset fields existed still checks every recall
    and alarm rate it has; any one of them off, or no headline, does not reproduce."""
    from train.teacher_row import reproduces

    ours = {"screams": 792, "recall_at_2_fa_per_hour": 0.0442, "median_onset_at_2_fa_per_hour_s": 1.435}
    assert reproduces(ours, {"screams": 792, "recall_at_2_fa_per_hour": 0.0442})
    assert reproduces(ours, dict(ours))
    assert not reproduces(ours, {"screams": 792, "recall_at_2_fa_per_hour": 0.0443})
    assert not reproduces(ours, {"screams": 792, "median_onset_at_2_fa_per_hour_s": 1.2})
    assert not reproduces(ours, {"screams": 792, "fa_per_hour_at_recall_0.8": None})
    assert not reproduces(ours, None) and not reproduces(ours, {})


def test_the_teacher_row_can_decide_every_row_with_another_patience(
    crossval_folder: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """--patience K N: every row, the fold models' own too, decided with k of n windows (a site's
    `[detector] patience_windows/patience_of`); the recipe's row then is not the crossval's headline."""
    from train.teacher_row import teacher_row

    cv, manifest, cache = crossval_folder
    report = teacher_row(cv, manifest, tmp_path / "out", PitchTeacher(), cache_dir=str(cache), patience=(1, 1))
    assert report["patience"] == [1, 1] and report["crossval_recipe"]["reproduces_crossval_headline"] is None
    for row in report["rows"].values():
        assert {c["decisions"] for c in row["curves"]} == {"1 of 1 window"}
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "Every row decided with 1 of 1 windows instead of each fold model's own patience" in markdown
    assert "median onset at <= 2 / <= 5 FA/h (s)" in markdown


def test_a_teachers_float_scores_get_thresholds_past_the_int8_top() -> None:
    """A teacher's scores run on towards 1: among its highest windows, thresholds the int8 grid
    (top 0.995, 4 decimals) cannot tell apart are candidates of its own."""
    from train.scenes import curve_thresholds, float_thresholds

    scores = [0.1] * 9000 + [1 - 10.0**-k for k in np.linspace(2.5, 6.5, 1000)]
    scenes = [(_stream(scores), [])]
    int8, floats = curve_thresholds(scenes), float_thresholds(scenes)
    assert max(int8) == 0.995 and max(floats) > 0.9999
    assert len([t for t in floats if t > 0.995]) > 5


def test_a_false_alarm_is_put_on_the_non_scream_playing_then_and_the_scene_repeats_its_stream() -> None:
    from train.data import Clip
    from train.teacher_row import clip_at

    a, b = Clip(Path("a.wav"), "non_scream", "g", category="alarm"), Clip(Path("b.wav"), "non_scream", "g")
    layout = [(0.0, a), (30.0, b)]
    assert [clip_at(layout, 50.0, t).path.name for t in (0.0, 29.9, 30.0, 49.9, 50.0, 85.0)] == [
        "a.wav",
        "a.wav",
        "b.wav",
        "b.wav",
        "a.wav",
        "b.wav",
    ]


def test_bands_name_their_edges_and_unknowns() -> None:
    from train.teacher_row import band, band_names

    edges = (0.05, 0.2, 0.5)
    assert [band(v, edges) for v in (0.0, 0.05, 0.19, 0.2, 0.5, 1.0, None)] == [
        "< 0.05",
        "0.05-0.2",
        "0.05-0.2",
        "0.2-0.5",
        ">= 0.5",
        ">= 0.5",
        "unknown",
    ]
    assert band_names(edges) == ["< 0.05", "0.05-0.2", "0.2-0.5", ">= 0.5", "unknown"]


def test_cascade_losses_account_for_every_scream_and_false_alarm_of_every_point(tiny_model: Path) -> None:
    """At every point (`on`, `verify_on`) the screams found and the false alarms are the point's own
    (`cascade_curve` at that point alone), each false alarm on the non-scream under it; a verifier
    that passes nothing vetoes every scream the recipe raises, and an `on` past every score leaves
    those below `on` and the rest never raised."""
    from edge import synth
    from train.data import Clip
    from train.scenes import build_scene, curve_thresholds, score_stream
    from train.teacher_row import cascade_curve, cascade_losses

    rng = np.random.default_rng(3)
    classifier = Classifier(tiny_model, expected_features=FeatureParams())
    decisions, _ = detection_settings(classifier.sidecar)
    background = synth.room_tone(90.0, 16000, rng, level=0.01) + synth.speech_like(90.0, 16000, rng, level=0.05)
    for at in (70, 77, 84):  # scream-like non-screams after the last inserted scream (66 s)
        background[at * 16000 : at * 16000 + 24000] += synth.scream_like(1.5, 16000, rng, level=0.4)
    screams = [synth.scream_like(1.2, 16000, rng, level=level) for level in (0.5, 0.4, 0.02, 0.3, 0.5)]
    scene, truth = build_scene(background.astype(np.float32), screams, classifier.sidecar.features, rng)
    recipe = [(score_stream(classifier, scene), truth)]
    teacher = [(_stream(list(rng.uniform(0, 1, len(recipe[0][0].windows)))), truth)]
    talk, siren = (Clip(Path(n), "non_scream", "g", category=c) for n, c in (("t.wav", "speech"), ("s.wav", "alarm")))
    layouts = [([(0.0, talk), (66.0, siren)], 90.0)]
    ons = curve_thresholds(recipe)
    sirens = 0
    for on in ons[::4]:
        for verify_on in (0.0, 0.5, 0.9):
            (row,) = cascade_curve(recipe, teacher, decisions, [on], [verify_on], attempts=2)["rows"]
            losses = cascade_losses(recipe, teacher, layouts, decisions, row, min(ons), attempts=2)
            assert [s["outcome"] == "found" for s in losses["screams"]] == [bool(h) for h in row["hits"]]
            for scream, onset in zip(losses["screams"], row["onset_s"], strict=True):
                if scream["outcome"] == "found":  # the same alarm, its onset split in two
                    assert scream["hit_s"] + scream["decision_s"] == pytest.approx(onset, abs=0.006)
                    assert scream["decision_s"] >= 0 and 1 <= scream["verdict"] <= 2
                else:
                    assert "hit_s" not in scream
            assert len(losses["false_alarms"]) == row["false_alarms"]
            for alarm in losses["false_alarms"]:
                assert alarm["category"] == ("alarm" if alarm["at_s"] % 90.0 >= 66.0 else "speech")
            sirens += sum(a["category"] == "alarm" for a in losses["false_alarms"])
    assert sirens > 0
    # Nothing passes: every scream the recipe raises at this `on` is vetoed, and nothing fires.
    on = min(ons)
    vetoing = cascade_losses(recipe, teacher, layouts, decisions, {"on": on, "verify_on": 2.0}, on)
    assert vetoing["false_alarms"] == []
    assert {s["outcome"] for s in vetoing["screams"]} <= {"vetoed", "never_raised"}
    assert any(s["outcome"] == "vetoed" for s in vetoing["screams"])
    # No window reaches this `on`: what the lowest `on` raises is below `on`, the rest never raised.
    past = max(w.score for w in recipe[0][0].windows) + 1e-3
    above = cascade_losses(recipe, teacher, layouts, decisions, {"on": past, "verify_on": 0.0}, on)
    assert [s["outcome"] for s in above["screams"]] == [
        "below_on" if s["outcome"] == "vetoed" else "never_raised" for s in vetoing["screams"]
    ]
    # Without a point within the budget, nothing fires and every scream says so.
    none = cascade_losses(recipe, teacher, layouts, decisions, None, on)
    assert [s["outcome"] for s in none["screams"]] == ["no_point"] * len(truth) and none["false_alarms"] == []


def test_a_lower_floor_adds_lower_ons_and_keeps_every_default_one() -> None:
    from train.scenes import curve_thresholds

    scores = np.linspace(0.0, 1.0, 1001)
    scenes = [(StreamScores([WindowScore(i, 0.0, 1.0, float(s), -20.0) for i, s in enumerate(scores)], 10.0), [])]
    default = curve_thresholds(scenes)
    quantiles = np.quantile(scores, 1 - np.geomspace(0.2, 1e-4, 40))  # the grid as it always was
    assert default == sorted({round(float(np.clip(q, 0.01, 0.995)), 4) for q in quantiles})
    assert min(default) == 0.8 and curve_thresholds(scenes, floor=0.8) == default
    lower = curve_thresholds(scenes, floor=0.3)
    assert set(default) < set(lower) and sorted(set(lower) - set(default)) == [0.3, 0.4, 0.5, 0.6, 0.7]
    for bad in (0.0, 0.85):
        with pytest.raises(ValueError, match="floor"):
            curve_thresholds(scenes, floor=bad)


def test_the_cascades_can_try_lower_ons_and_then_find_at_least_as_much(
    crossval_folder: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--cascade-floor Q: the cascades' `on` grid reaches down to the Q quantile of the recipe's scene
    scores, on top of every default point, so at each budget a cascade finds at least what it found;
    the recipe's own row and the teacher's rows do not move."""
    from edge.cli import main
    from train.teacher_row import CASCADES, ROWS, teacher_row

    cv, manifest, cache = crossval_folder
    default = teacher_row(cv, manifest, tmp_path / "default", PitchTeacher(), cache_dir=str(cache))
    lower = teacher_row(cv, manifest, tmp_path / "lower", PitchTeacher(), cache_dir=str(cache), cascade_floor=0.3)
    assert (default["cascade_floor"], lower["cascade_floor"]) == (0.8, 0.3)
    said = "The cascades try as `on` the recipe's scene window scores from their 30th percentile up"
    assert said in (tmp_path / "lower" / "report.md").read_text()
    assert "--cascade-floor" not in (tmp_path / "default" / "report.md").read_text()
    with pytest.raises(ValueError, match="floor must be a quantile"):  # refused before any work
        teacher_row(cv, manifest, tmp_path / "refused", PitchTeacher(), cache_dir=str(cache), cascade_floor=0.9)
    assert not (tmp_path / "refused").exists()
    assert lower["crossval_recipe"]["headline"] == default["crossval_recipe"]["headline"]
    for row in ROWS:
        assert lower["rows"][row]["headline"] == default["rows"][row]["headline"]
    for row in CASCADES:
        for budget in (2, 5):
            key = f"recall_at_{budget}_fa_per_hour"
            assert lower["rows"][row]["headline"][key] >= default["rows"][row]["headline"][key]
    # The command line hands the floor over (0.8 when not given).
    import train.distill
    import train.teacher_row

    seen: dict[str, object] = {}
    monkeypatch.setattr(train.distill, "load_teacher", lambda folder: PitchTeacher())
    monkeypatch.setattr(train.teacher_row, "teacher_row", lambda *a, **kw: seen.update(kw) or {})
    argv = ["teacher-row", "--crossval", "c", "--data", "d", "--teacher", "t", "--out", "o"]
    assert main(argv) == 0 and seen["cascade_floor"] == 0.8
    assert main([*argv, "--cascade-floor", "0.5"]) == 0 and seen["cascade_floor"] == 0.5
