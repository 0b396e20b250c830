from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge.detector import DecisionParams, EventStarted
from edge.features import FeatureParams
from edge.pipeline import WindowScore
from train.scenes import StreamScores, build_scene, decision_variants, pooled_scene_metrics, scene_metrics


def scored(scores: np.ndarray, starts: np.ndarray, seconds: float, level_dbfs: float = -20.0) -> StreamScores:
    """Windows 1 s long at `starts`, as loud as `level_dbfs`."""
    pairs = enumerate(zip(starts, scores, strict=True))
    windows = [WindowScore(i, float(t), float(t) + 1.0, float(v), level_dbfs) for i, (t, v) in pairs]
    return StreamScores(windows, seconds)


def test_evaluate_writes_report_plots_and_model_card(tiny_training, synthetic_dataset: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    from edge.cli import main

    model = tiny_training.model_path
    splits = model.parent / f"{model.stem}-run" / "splits.tsv"
    out = tmp_path / "report"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(model),
                "--data",
                str(synthetic_dataset),
                "--splits",
                str(splits),
                "--out",
                str(out),
                "--cache",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    test_rows = [r for r in splits.read_text().splitlines()[1:] if r.startswith("test\t")]
    assert report["data"]["clips"] == len(test_rows)
    for block in ("windows", "clips"):
        assert set(report[block]) >= {
            "roc_auc",
            "pr_auc",
            "recall_at_1pct_fpr",
            "recall_at_5pct_fpr",
            "f1_at_threshold",
            "confusion_at_threshold",
        }
        # Each ranking metric comes with a 95% interval from resampling recording groups.
        for key, (low, high) in report[block]["interval_95"].items():
            assert 0 <= low <= high <= 1 and key in report[block]
    assert set(report["windows"]["interval_95"]) == {"roc_auc", "pr_auc", "recall_at_1pct_fpr", "recall_at_5pct_fpr"}
    low, high = report["stream"]["false_alarms_per_hour_interval_95"]
    assert 0 <= low <= report["stream"]["false_alarms_per_hour"] < high
    assert "95% interval" in (out / "model_card.md").read_text()
    assert report["clips"]["roc_auc"] >= 0.9  # the synthetic classes separate
    assert report["stream"]["hours"] > 0 and report["scene"]["scenes"] == 4
    sources = report["sources"]
    assert sum(r["screams"] for r in sources.values()) == report["data"]["screams"]
    assert sum(r["non_screams"] for r in sources.values()) == report["data"]["non_screams"]
    assert all(0 <= r["screams_found"] <= r["screams"] for r in sources.values())
    assert report["scene"]["screams"] == 4 * report["data"]["screams"]  # every scream in each of the scenes
    assert 0 <= report["scene"]["event_recall"] <= 1
    for png in ("roc_pr.png", "score_histograms.png", "training_curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (out / "model_card.md").read_text()
    assert "## Model card: `tiny`" in card and "| target (DESIGN.md) | measured | 95% interval | met |" in card
    assert "a CNN of one 3x3 convolution" in card and "epochs;" in card
    conditions = report["conditions"]
    assert next(iter(conditions)) == "as recorded" and len(conditions) == 7
    assert conditions["as recorded"]["roc_auc"] == report["windows"]["roc_auc"]
    for row in conditions.values():
        assert 0 <= row["roc_auc"] <= 1 and 0 <= row["non_scream_windows_at_on"] <= 1
        assert row["screams"] == report["data"]["screams"] and 0 <= row["screams_found"] <= row["screams"]
    assert "## Recording conditions" in (out / "report.md").read_text()
    assert "| recording condition | window ROC AUC |" in card and "| telephone band, 300-3400 Hz |" in card
    assert "ROC AUC" in (out / "report.md").read_text()
    variants = report["decision_variants"]
    shipped = variants[0]
    assert shipped["shipped"] and not any(v["shipped"] for v in variants[1:])
    assert shipped["stream_false_alarms_per_hour"] == report["stream"]["false_alarms_per_hour"]
    assert shipped["scene_event_recall"] == report["scene"]["event_recall"]
    assert len({v["decisions"] for v in variants}) == len(variants) >= 3
    assert "| `[detector]` decisions at the shipped `on` |" in card
    fired_in = report["stream"]["fired_in"]
    assert len(fired_in) == report["stream"]["false_alarms"]
    assert report["stream"]["at_clip_boundary"] == sum(f["at_clip_boundary"] for f in fired_in)
    assert 0 <= report["stream"]["boundary_window_share"] <= 1


def test_false_alarms_are_placed_in_their_clip_and_at_boundaries() -> None:
    from edge.detector import Event
    from train.data import Clip
    from train.scenes import where_false_alarms_fire

    base = Path("/data")
    clips = [Clip(path=base / f"{name}.wav", label="non_scream", category=name, group=name) for name in ("a", "b", "c")]
    layout = [(0.0, clips[0]), (5.0, clips[1]), (7.5, clips[2])]
    starts = np.arange(0, 11, 0.25)
    stream = scored(np.zeros(starts.size), starts, 12.0)
    fired = [EventStarted(Event(1, 2.0, 3.0, 0.9)), EventStarted(Event(2, 4.5, 5.5, 0.9))]
    fired.append(EventStarted(Event(3, 7.25, 8.25, 0.9)))
    result = where_false_alarms_fire(fired, stream, layout, 1.0, base)
    assert [(r["clip"], r["category"], r["at_clip_boundary"]) for r in result["fired_in"]] == [
        ("a.wav", "a", False),
        ("a.wav", "a", True),  # 4.5-5.5 s holds the end of a and the start of b
        ("b.wav", "b", True),
    ]
    assert result["at_clip_boundary"] == 2
    # Windows starting strictly inside (4, 5) or (6.5, 7.5) hold a boundary: 6 of the 44 windows.
    assert result["boundary_window_share"] == round(6 / 44, 3)


def test_decision_variants_replay_the_same_scores() -> None:
    # One lone spike at 10 s (a false alarm for 1 of 1 only) and a scream held over 3 windows at 30 s.
    hop = 0.25
    starts = np.arange(0, 60, hop)
    scores = np.full(starts.size, 0.1)
    scores[40] = 0.95
    scores[120:123] = 0.9
    stream = scored(scores, starts, 61.0)
    scene = (stream, [{"onset_s": 30.0, "end_s": 31.5, "snr_db": 10.0}])
    decisions = DecisionParams(on_threshold=0.8, off_threshold=0.5, min_event_s=0.0)
    rows = {r["decisions"]: r for r in decision_variants(stream, [scene], decisions)}
    assert list(rows) == ["1 of 1 window", "2 of 2 windows", "mean of 2 windows", "mean of 3 windows"]
    assert rows["1 of 1 window"]["shipped"] and rows["1 of 1 window"]["scene_false_alarms_per_hour"] > 0
    for name in ("2 of 2 windows", "mean of 2 windows", "mean of 3 windows"):
        assert rows[name]["scene_event_recall"] == 1.0 and rows[name]["scene_false_alarms_per_hour"] == 0
    assert rows["mean of 3 windows"]["median_onset_to_alarm_s"] > rows["1 of 1 window"]["median_onset_to_alarm_s"]
    # Shipped decisions that are one of the variants are listed once, first.
    smoothed = replace(decisions, smoothing_windows=3, patience_windows=2, patience_of=3)
    rows_smoothed = decision_variants(stream, [scene], smoothed)
    assert rows_smoothed[0]["decisions"] == "mean of 3 windows, 2 of 3 windows" and len(rows_smoothed) == 5
    assert len(decision_variants(stream, [scene], replace(decisions, smoothing_windows=2))) == 4


def test_scene_puts_screams_at_known_times_and_scores_events() -> None:
    features = FeatureParams()
    rng = np.random.default_rng(0)
    background = (0.01 * rng.standard_normal(16000 * 30)).astype(np.float32)
    scream = np.zeros(16000, np.float32)
    scream[4000:12000] = 0.5 * np.sin(np.arange(8000) * 0.3)
    scene, truth = build_scene(background, [scream, scream], features, rng)
    assert len(truth) == 2 and truth[0]["onset_s"] == pytest.approx(6.0 + 0.25, abs=0.02)
    assert all(0 <= t["snr_db"] <= 20 for t in truth)
    for t in truth:  # the inserted scream sits at the stated SNR over the local background
        a, b = int(t["onset_s"] * 16000), int(t["end_s"] * 16000)
        added, local = scene[a:b] - background[a:b], background[a:b]
        snr = 20 * np.log10(np.sqrt(np.mean(added**2)) / np.sqrt(np.mean(local**2)))
        assert snr == pytest.approx(t["snr_db"], abs=0.3)

    class E:
        def __init__(self, detected: float) -> None:
            self.event = type("Ev", (), {"detected_s": detected})()

    starts = [E(6.8), E(15.0)]
    spans = [(6.1, 7.4), (14.9, 16.0)]
    m = scene_metrics(starts, spans, truth, 3600.0)  # type: ignore[arg-type]
    assert m["detected"] == 1 and m["false_alarms"] == 1 and m["median_onset_to_alarm_s"] == pytest.approx(0.55)
    # Pooled over a second scene with no alarm: counts add up, rates are over both.
    pooled = pooled_scene_metrics([(starts, spans, truth, 3600.0), ([], [], truth, 3600.0)])  # type: ignore[list-item]
    assert (pooled["scenes"], pooled["screams"], pooled["detected"], pooled["event_recall"]) == (2, 4, 1, 0.25)
    assert pooled["false_alarms_per_hour"] == 0.5 and pooled["missed_snr_db"] == sorted(pooled["missed_snr_db"])


def test_model_card_describes_an_ensemble() -> None:
    from train.report import _epochs_text, _network_text

    text = _network_text({"members": 3, "seed": 0, "width": 16, "head": "global"})
    assert text.startswith("the mean of 3 CNNs trained alike from seeds 0-2") and "(width 16)" in text
    assert _epochs_text([12, 20, 9]) == "12/20/9 epochs (per member)" and _epochs_text(14) == "14 epochs"
    assert "divided" not in text and "global average pooling" in text
    pooled = _network_text({"members": 1, "width": 16, "head": "mean-max"})
    assert "average pooling over frequency, then the mean plus the maximum over time" in pooled
    softened = _network_text({"members": 1, "width": 16, "head": "global"}, 2.5)
    assert softened.endswith("one sigmoid unit (its logit divided by 2.5 at export, so int8 resolves the top scores)")


def test_model_card_names_the_recipe_options_a_model_was_trained_with() -> None:
    from train.report import _recipe_text

    assert _recipe_text({"min_teacher_scream": 0.0, "procedural_fraction": 0.0}) == "with its defaults"
    assert _recipe_text({"output_logit_max": 3.0}) == "with its defaults and `--output-logit-max 3`"
    text = _recipe_text({"min_teacher_scream": 0.05, "spoken_fraction": 0.1, "distill_weight": 0.0})
    assert text.startswith("with its defaults and `--min-teacher-scream 0.05` (train and validation leave out")
    assert text.endswith(", `--spoken-fraction 0.1`") and "distill" not in text
    assert _recipe_text({"onset_window_fraction": 0.3}) == "with its defaults"
    assert _recipe_text({"onset_window_fraction": 0.6}) == "with its defaults and `--onset-fraction 0.6`"


def test_recording_conditions_do_what_they_say() -> None:
    from train.evaluate import RECORDING_CONDITIONS

    rate = 16000
    t = np.arange(rate) / rate
    rng = np.random.default_rng(0)

    def level_db(x: np.ndarray, hz: float) -> float:
        spectrum = np.abs(np.fft.rfft(x[rate // 4 :]))  # past the filters' start-up
        return float(20 * np.log10(spectrum[int(hz * (x.size - rate // 4) / rate)] + 1e-12))

    tones = {hz: (0.1 * np.sin(2 * np.pi * hz * t)).astype(np.float32) for hz in (100.0, 1000.0, 6000.0)}
    phone = RECORDING_CONDITIONS["telephone band, 300-3400 Hz"]
    kept = level_db(phone(tones[1000.0], rate, rng), 1000.0) - level_db(tones[1000.0], 1000.0)
    assert kept > -1.0
    for hz in (100.0, 6000.0):
        assert level_db(phone(tones[hz], rate, rng), hz) - level_db(tones[hz], hz) < -30
    low = RECORDING_CONDITIONS["low-pass 3.8 kHz (an 8 kHz recording)"]
    assert level_db(low(tones[6000.0], rate, rng), 6000.0) - level_db(tones[6000.0], 6000.0) < -30
    quiet = RECORDING_CONDITIONS["-30 dB (distant or low-gain microphone)"](tones[1000.0], rate, rng)
    assert np.max(np.abs(quiet)) == pytest.approx(0.1 * 10 ** (-30 / 20), rel=1e-3)
    loud = RECORDING_CONDITIONS["overdriven: +20 dB, clipped at full scale"](3 * tones[1000.0], rate, rng)
    assert np.max(np.abs(loud)) == 1.0 and np.mean(np.abs(loud) == 1.0) > 0.7
    noisy = RECORDING_CONDITIONS["pink noise at 10 dB SNR"](tones[1000.0], rate, rng)
    noise = noisy - tones[1000.0]
    snr = 10 * np.log10(np.mean(tones[1000.0] ** 2) / np.mean(noise**2))
    assert snr == pytest.approx(10.0, abs=0.1)
    wet = RECORDING_CONDITIONS["room reverberation, RT60 0.6 s"](tones[1000.0], rate, rng)
    assert wet.shape == tones[1000.0].shape and not np.allclose(wet, tones[1000.0])


def test_evaluate_against_a_baseline_reports_paired_differences(  # type: ignore[no-untyped-def]
    tiny_training, synthetic_dataset: Path, tmp_path: Path
) -> None:
    """--baseline scores a second model on the same clips; each metric's difference is this model
    minus the baseline with a paired interval, and a baseline cut into other windows is refused."""
    pytest.importorskip("tensorflow")
    from edge.features import FeatureParams
    from tests.helpers import export_random_windows
    from train.evaluate import evaluate
    from train.export import export_model
    from train.model import build_model

    model = tiny_training.model_path
    splits = model.parent / f"{model.stem}-run" / "splits.tsv"
    windows = np.random.default_rng(0).normal(-8, 3, size=(40, 96, 40)).astype(np.float32)
    untrained = build_model(window_frames=96, mel_bands=40, feature_mean=-8.0, feature_std=3.0, width=4, seed=5)
    export_random_windows(untrained, tmp_path / "untrained", windows, thresholds={"on": 0.99, "off": 0.9})
    common = {"splits_file": splits, "cache_dir": str(tmp_path / "cache"), "scenes": 1, "make_plots": False}

    untrained_path = tmp_path / "untrained.tflite"
    report = evaluate(model, synthetic_dataset, out_dir=tmp_path / "r", baseline=untrained_path, **common)
    alone = evaluate(untrained_path, synthetic_dataset, out_dir=tmp_path / "b", **common)
    base = report["baseline"]
    for block in ("windows", "clips"):
        for key, row in base[block].items():
            assert row["model"] == report[block][key] and row["baseline"] == alone[block][key]
            assert row["difference"] == pytest.approx(row["model"] - row["baseline"], abs=2e-4)
            assert row["interval_95"][0] <= row["interval_95"][1]
    # The trained model separates the synthetic classes; the untrained one does not, on every resample.
    assert base["windows"]["roc_auc"]["interval_95"][0] > 0
    assert base["stream_false_alarms"] == alone["stream"]["false_alarms"]
    assert "## Against the baseline `untrained.tflite`" in (tmp_path / "r" / "report.md").read_text()

    # The scene headlines paired over the same scenes: each side is that model's own curve.
    assert base["headline"]["model"] == report["scene_headline"]
    assert base["headline"]["baseline"] == alone["scene_headline"]
    # A folder data set has no teacher audit: no audited headline, alone or paired.
    assert report["scene_headline_audited"] is None and base["headline_audited"] is None

    # Against itself every difference is exactly zero.
    same = evaluate(model, synthetic_dataset, out_dir=tmp_path / "s", baseline=model, **common)["baseline"]
    assert all(row["interval_95"] == [0.0, 0.0] for row in same["windows"].values())
    assert all(same["headline"][f"recall_at_{b}_fa_per_hour"]["difference"] == 0 for b in (2, 5))

    # A manifest with the audit: every other scream below AUDITED_AT leaves the audited headline.
    manifest = tmp_path / "audited.tsv"
    rows = ["path\tlabel\tgroup\tsource\tteacher_scream"]
    for i, path in enumerate(sorted((synthetic_dataset / "scream").glob("*.wav"))):
        rows.append(f"{path}\tscream\ts{i}\tsrc{i % 4}\t{0.9 if i % 2 else 0.01}")
    for i, path in enumerate(sorted((synthetic_dataset / "non_scream").glob("*.wav"))):
        rows.append(f"{path}\tnon_scream\tn{i}\tsrc{i % 4}\t")
    manifest.write_text("\n".join(rows) + "\n")
    audited = evaluate(
        model,
        manifest,
        out_dir=tmp_path / "a",
        baseline=model,
        cache_dir=str(tmp_path / "cache"),
        scenes=1,
        make_plots=False,
    )
    screams = len(rows[1:]) // 2
    assert audited["scene_headline_audited"]["of"] == screams
    assert audited["scene_headline_audited"]["screams"] == screams // 2
    paired = audited["baseline"]["headline_audited"]
    assert paired["model"] == paired["baseline"] and paired["model"]["screams"] == screams // 2
    assert all(paired[f"recall_at_{b}_fa_per_hour"]["difference"] == 0 for b in (2, 5))
    text = (tmp_path / "a" / "report.md").read_text()
    assert f"Among the {screams // 2} of {screams} inserted screams" in text
    assert f"scenes, the {screams // 2} of {screams} screams with teacher audit >= 0.05" in text

    short = build_model(window_frames=48, mel_bands=40, feature_mean=-8.0, feature_std=3.0, width=4)
    export_model(
        short,
        tmp_path / "short",
        features=FeatureParams(),
        window_frames=48,
        hop_frames=25,
        representative=windows[:, :48],
        check_windows=windows[:, :48],
        thresholds={"on": 0.99, "off": 0.9},
    )
    # A baseline with another window (a shorter one here) cuts other windows: clips, stream and scenes
    # are paired, windows are not.
    shorter = evaluate(model, synthetic_dataset, out_dir=tmp_path / "x", baseline=tmp_path / "short.tflite", **common)
    short_alone = evaluate(tmp_path / "short.tflite", synthetic_dataset, out_dir=tmp_path / "y", **common)
    against_short = shorter["baseline"]
    assert against_short["windows"] is None and against_short["window_cut"] == "48 frames every 25"
    assert against_short["clips"]["roc_auc"]["baseline"] == short_alone["clips"]["roc_auc"]
    assert against_short["stream_false_alarms"] == short_alone["stream"]["false_alarms"]
    assert against_short["headline"]["baseline"] == short_alone["scene_headline"]
    text = (tmp_path / "x" / "report.md").read_text()
    assert "No window rows: the baseline cuts the clips into other windows (48 frames every 25)" in text
    assert "\n| clip ROC AUC |" in text and "\n| window ROC AUC |" not in text  # the paired table's rows


def _curve(rows: list[tuple[float, int, list[int]]], sources: list[str], hours: float) -> dict:  # type: ignore[type-arg]
    return {
        "decisions": "1 of 1 window",
        "hours": hours,
        "sources": sources,
        "rows": [{"on": on, "false_alarms": fa, "hits": hits} for on, fa, hits in rows],
    }


def test_the_headline_takes_each_folds_best_threshold_within_the_budget() -> None:
    from train.scenes import curve_headline, paired_headline

    # Fold A: 1 hour, 4 screams from sources a, a, b, b. Fold B: 2 hours, 2 screams from c, d.
    a = _curve([(0.5, 9, [1, 1, 1, 1]), (0.7, 4, [1, 1, 1, 0]), (0.9, 1, [1, 0, 0, 0])], ["a", "a", "b", "b"], 1.0)
    b = _curve([(0.6, 12, [1, 1]), (0.8, 3, [0, 1]), (0.95, 0, [0, 0])], ["c", "d"], 2.0)
    h = curve_headline([a, b])
    # <= 2/h: A at 0.9 (1 alarm in 1 h) finds 1 of 4; B at 0.8 (3 in 2 h) finds 1 of 2 -> 2 of 6.
    assert (
        h["recall_at_2_fa_per_hour"] == round(2 / 6, 4) and h["recall_at_2_fa_per_hour_false_alarms_per_hour"] == 1.333
    )
    # <= 5/h: A at 0.7 (3 of 4), B at 0.8 (1 of 2, as 0.6 is 6/h) -> 4 of 6.
    assert h["recall_at_5_fa_per_hour"] == round(4 / 6, 4)
    low, high = h["recall_at_5_fa_per_hour_interval_95"]
    assert 0.0 <= low <= h["recall_at_5_fa_per_hour"] <= high <= 1.0
    # Recall 0.8: A needs 0.5 (9 alarms, 4 of 4), B needs 0.6 (12, 2 of 2) -> 21 alarms in 3 hours.
    assert h["fa_per_hour_at_recall_0.8"] == 7.0 and h["hours"] == 3.0 and h["screams"] == 6
    lo, hi = h["fa_per_hour_at_recall_0.8_interval_95"]
    assert lo < 7.0 < hi
    never = _curve([(0.5, 0, [1, 0, 0, 0])], ["a", "a", "b", "b"], 1.0)
    assert curve_headline([never, b])["fa_per_hour_at_recall_0.8"] is None  # a fold never gets there
    # Against itself the difference is exactly zero; against `never` fold A loses 2 screams at <= 5/h.
    same = paired_headline([a, b], [a, b])
    assert same["recall_at_5_fa_per_hour"] == {"difference": 0.0, "interval_95": [0.0, 0.0]}
    worse = paired_headline([a, b], [never, b])
    assert worse["recall_at_5_fa_per_hour"]["difference"] == round(2 / 6, 4)
    assert worse["baseline"]["recall_at_5_fa_per_hour"] == round(2 / 6, 4)
    with pytest.raises(ValueError, match="other screams"):
        paired_headline([a], [b])


def test_the_headline_gives_the_onset_of_the_screams_each_budget_finds() -> None:
    from train.report import _paired_headline_lines, headline_lines
    from train.scenes import audited_headline, curve_headline, paired_headline

    # The folds above, each found scream with an onset to alarm: a higher `on`, later.
    a = _curve([(0.5, 9, [1, 1, 1, 1]), (0.7, 4, [1, 1, 1, 0]), (0.9, 1, [1, 0, 0, 0])], ["a", "a", "b", "b"], 1.0)
    b = _curve([(0.6, 12, [1, 1]), (0.8, 3, [0, 1]), (0.95, 0, [0, 0])], ["c", "d"], 2.0)
    assert curve_headline([a, b])["median_onset_at_5_fa_per_hour_s"] is None  # curves written before onsets
    onsets = {0.5: [0.3, 0.4, 0.5, 0.6], 0.7: [0.4, 0.5, 0.9, None], 0.9: [0.7, None, None, None]}
    onsets |= {0.6: [0.2, 0.3], 0.8: [None, 0.6], 0.95: [None, None]}
    for row in a["rows"] + b["rows"]:
        row["onset_s"] = onsets[row["on"]]
    h = curve_headline([a, b])
    # <= 2/h: A at 0.9 (0.7), B at 0.8 (0.6) -> 0.65. <= 5/h: A at 0.7 (0.4, 0.5, 0.9), B at 0.8 (0.6) -> 0.55.
    assert (h["median_onset_at_2_fa_per_hour_s"], h["median_onset_at_5_fa_per_hour_s"]) == (0.65, 0.55)
    assert "0.65 s at <= 2 and 0.55 s at <= 5 false alarms/h" in "\n".join(headline_lines(h, what="folds"))
    # A fold with no row within the budget adds no onset; none found at all gives None.
    silent = _curve([(0.5, 9, [0, 0])], ["e", "f"], 1.0)
    silent["rows"][0]["onset_s"] = [None, None]
    assert curve_headline([silent, b])["median_onset_at_2_fa_per_hour_s"] == 0.6
    assert curve_headline([silent])["median_onset_at_5_fa_per_hour_s"] is None
    # Paired: both sides' onsets in the table; audited: only the kept screams' onsets.
    lines = _paired_headline_lines(paired_headline([a, b], [a, b]))
    assert "| median onset to alarm (s) at <= 5 false alarms/h | 0.55 | 0.55 | |" in lines
    a["teacher_scream"], b["teacher_scream"] = [0.6, 0.6, 0.01, 0.6], [0.6, 0.6]
    audited = audited_headline([a, b])
    assert audited is not None and audited["median_onset_at_5_fa_per_hour_s"] == 0.5  # 0.4, 0.5 and B's 0.6


def test_the_audited_headline_counts_only_the_screams_the_teacher_does_not_reject() -> None:
    from train.report import _audited_caption, _paired_headline_lines, audited_headline_lines
    from train.scenes import audited_curves, audited_headline, curve_headline

    # The curves of the test above, with an audit per scream: fold A's second and fourth screams are
    # ones the teacher hears as something else (0.01, 0.0), fold B's first (0.049, under 0.05).
    a = _curve([(0.5, 9, [1, 1, 1, 1]), (0.7, 4, [1, 1, 1, 0]), (0.9, 1, [1, 0, 0, 0])], ["a", "a", "b", "b"], 1.0)
    b = _curve([(0.6, 12, [1, 1]), (0.8, 3, [0, 1]), (0.95, 0, [0, 0])], ["c", "d"], 2.0)
    a["teacher_scream"], b["teacher_scream"] = [0.6, 0.01, 0.2, 0.0], [0.049, 0.05]
    kept = audited_curves([a, b], 0.05)
    assert kept is not None
    assert [c["sources"] for c in kept] == [["a", "b"], ["d"]]
    assert [r["hits"] for r in kept[0]["rows"]] == [[1, 1], [1, 1], [1, 0]]
    assert [r["false_alarms"] for r in kept[1]["rows"]] == [12, 3, 0]  # alarms stay as they were
    h = audited_headline([a, b])
    assert h is not None and (h["at"], h["of"], h["screams"]) == (0.05, 6, 3)
    # <= 2/h: A at 0.9 finds its first (1 of 2 kept); B at 0.8 (3 in 2 h) finds d -> 2 of 3.
    assert h["recall_at_2_fa_per_hour"] == round(2 / 3, 4) and h == {"at": 0.05, "of": 6} | curve_headline(kept)
    # <= 5/h: A at 0.7 finds both kept screams (the missed fourth no longer counts) -> 3 of 3.
    assert h["recall_at_5_fa_per_hour"] == 1.0
    # A baseline's curves are cut by the model's audit (the same screams in the same order).
    never = _curve([(0.5, 0, [1, 0, 0, 0])], ["a", "a", "b", "b"], 1.0)
    paired = audited_headline([a, b], [never, b])
    assert paired is not None and paired["baseline"]["recall_at_5_fa_per_hour"] == round(2 / 3, 4)
    assert paired["recall_at_5_fa_per_hour"]["difference"] == round(1 - 2 / 3, 4)
    # Scenes built from data without an audit: no such headline, and no paragraph.
    assert audited_headline([_curve([(0.5, 0, [1])], ["a"], 1.0)]) is None
    b["teacher_scream"] = [None, 0.05]
    assert audited_curves([a, b], 0.05) is None
    assert audited_headline_lines(None) == []
    text = "\n".join(audited_headline_lines(h))
    assert text.startswith("Among the 3 of 6 inserted screams whose teacher audit") and "1.0" in text
    lines = _paired_headline_lines(paired, _audited_caption(paired))
    assert "| scenes, the 3 of 6 screams with teacher audit >= 0.05 | this recipe | baseline |" in lines[1]
    assert lines[3].startswith("| event recall at <= 2 false alarms/h | 0.6667 | ")
    # Every scream rejected: no recall to pair, and the table says so instead of failing.
    a["teacher_scream"], b["teacher_scream"] = [0.0] * 4, [0.01, 0.0]
    nothing = audited_headline([a, b], [a, b])
    assert nothing is not None and nothing["recall_at_2_fa_per_hour"]["difference"] is None
    assert _paired_headline_lines(nothing)[3].endswith("| - |")


def test_scene_curve_replays_each_threshold_through_the_live_decisions() -> None:
    from train.scenes import curve_thresholds, scene_curve

    hop = 0.25
    starts = np.arange(0, 60, hop)
    scores = np.full(starts.size, 0.1)
    scores[40] = 0.7  # a false alarm at 0.6, not at 0.8
    scores[119] = 0.7  # the scream at 30 s, rising: the window ending at 30.75 s ...
    scores[120:123] = 0.9  # ... then those ending at 31 s and after
    stream = scored(scores, starts, 61.0)
    truth = [{"onset_s": 30.0, "end_s": 31.5, "snr_db": 10.0, "source": "x"}]
    decisions = DecisionParams(on_threshold=0.8, off_threshold=0.4, min_event_s=0.0)
    curve = scene_curve([(stream, truth)], decisions, [0.6, 0.8, 0.95])
    # Each row: its alarms, and each scream found with its onset to alarm (a lower `on`, sooner).
    assert [(r["on"], r["false_alarms"], r["hits"], r["onset_s"]) for r in curve["rows"]] == [
        (0.6, 1, [1], [0.75]),
        (0.8, 0, [1], [1.0]),
        (0.95, 0, [0], [None]),
    ]
    assert curve["sources"] == ["x"] and curve["hours"] == round(61 / 3600, 4) and curve["teacher_scream"] == [None]
    quiet = scored(scores, starts, 61.0, level_dbfs=-80.0)  # under the gate: nothing starts
    assert scene_curve([(quiet, truth)], decisions, [0.6])["rows"][0] == {
        "on": 0.6,
        "false_alarms": 0,
        "hits": [0],
        "onset_s": [None],
    }
    grid = curve_thresholds([(stream, truth)])
    assert grid == sorted(set(grid)) and all(0.01 <= t <= 0.995 for t in grid) and grid[-1] >= 0.7


def test_scenes_carry_each_screams_source_and_vary_levels_when_asked() -> None:
    from train.data import Clip
    from train.scenes import stream_and_scene

    features = FeatureParams()
    rng = np.random.default_rng(1)
    clips = [Clip(path=Path(f"/d/n{i}.wav"), label="non_scream", group=f"g{i}", source=f"s{i % 2}") for i in range(6)]
    clips += [
        Clip(path=Path(f"/d/s{i}.wav"), label="scream", group=f"h{i}", source=f"t{i}", teacher_scream=a)
        for i, a in enumerate((0.01, None))
    ]
    waves = [(0.05 * rng.standard_normal(16000)).astype(np.float32) for _ in clips]
    stream, _, truth, layout = stream_and_scene(clips, waves, features, seed=4)
    assert [t["source"] for t in truth] == ["t0", "t1"] and [t["teacher_scream"] for t in truth] == [0.01, None]
    varied, _, _, varied_layout = stream_and_scene(clips, waves, features, seed=4, level_spread_db=10.0)
    assert [c for _, c in varied_layout] == [c for _, c in layout]  # the same order, other levels
    ratios = [
        float(np.std(varied[k * 16000 : (k + 1) * 16000]) / np.std(stream[k * 16000 : (k + 1) * 16000]))
        for k in range(6)
    ]
    assert (
        all(10 ** (-10 / 20) - 1e-3 <= r <= 10 ** (10 / 20) + 1e-3 for r in ratios) and max(ratios) / min(ratios) > 1.5
    )
    again, _, _, _ = stream_and_scene(clips, waves, features, seed=4, level_spread_db=10.0)
    np.testing.assert_array_equal(again, varied)  # seeded


def test_evaluate_decides_streams_and_scenes_at_a_sites_hop(  # type: ignore[no-untyped-def]
    tiny_training, synthetic_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--hop-ms replays the stream and scenes as `listen` runs with `[detector] hop_ms` (the model's
    patience over the same span of time), for the model and its baseline alike; a hop the config
    would refuse is refused before anything is written."""
    from edge.classifier import Classifier
    from edge.config import DetectorConfig
    from edge.errors import ConfigError
    from edge.pipeline import detection_settings
    from train import evaluate as evaluation
    from train.scenes import score_stream

    model = tiny_training.model_path
    side = Classifier(model).sidecar
    common = {
        "splits_file": model.parent / f"{model.stem}-run" / "splits.tsv",
        "cache_dir": str(tmp_path / "cache"),
        "scenes": 2,
        "make_plots": False,
    }
    hops: list[int] = []

    def spy(classifier, audio, *, hop_frames=0):  # type: ignore[no-untyped-def]
        hops.append(hop_frames)
        return score_stream(classifier, audio, hop_frames=hop_frames)

    monkeypatch.setattr(evaluation, "score_stream", spy)
    report = evaluation.evaluate(model, synthetic_dataset, out_dir=tmp_path / "r", baseline=model, hop_ms=100, **common)
    # the stream, two scenes, and the same for the baseline: all 10 frames (100 ms) apart
    assert hops == [10] * 6 and side.hop_frames * side.features.hop_ms != 100
    decisions = report["model"]["decisions"]
    assert decisions["hop_ms"] == 100 and decisions["model_hop_ms"] == round(side.hop_frames * side.features.hop_ms)
    site, _ = detection_settings(side, DetectorConfig(hop_ms=100))
    assert decisions["describe"] == site.describe()  # (patience rescaled: tests/edge/test_classifier.py)
    assert report["decision_variants"][0]["decisions"] == site.describe()
    assert "`[detector] hop_ms = 100` (the model's own hop:" in (tmp_path / "r" / "report.md").read_text()

    hops.clear()
    own = evaluation.evaluate(model, synthetic_dataset, out_dir=tmp_path / "o", **common)
    assert hops == [side.hop_frames] * 3
    assert own["model"]["decisions"]["hop_ms"] == own["model"]["decisions"]["model_hop_ms"]
    assert "with the default config" in (tmp_path / "o" / "report.md").read_text()

    with pytest.raises(ConfigError, match=r"hop_ms must be 0 .* got 15"):
        evaluation.evaluate(model, synthetic_dataset, out_dir=tmp_path / "bad", hop_ms=15, **common)
    assert not (tmp_path / "bad").exists()


def test_a_stream_scored_at_a_hop_has_its_windows_that_far_apart(tiny_model: Path) -> None:
    from edge.classifier import Classifier
    from train.scenes import score_stream

    classifier = Classifier(tiny_model)
    audio = np.random.default_rng(1).normal(0, 0.05, 16000 * 4).astype(np.float32)
    for hop in (5, 10, classifier.sidecar.hop_frames):
        starts = score_stream(classifier, audio, hop_frames=hop).start_s
        np.testing.assert_allclose(np.diff(starts), hop * classifier.sidecar.features.hop_ms / 1000)
    own = score_stream(classifier, audio).start_s
    np.testing.assert_allclose(np.diff(own), classifier.sidecar.hop_frames * classifier.sidecar.features.hop_ms / 1000)
