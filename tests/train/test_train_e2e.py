from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.classifier import Classifier
from edge.pipeline import analyse_file
from tests.helpers import export_random_windows, make_synthetic_dataset
from train.metrics import roc_auc


def test_training_run_writes_reproducible_splits_without_leakage(tiny_training) -> None:  # type: ignore[no-untyped-def]
    run_dir = tiny_training.model_path.parent / "tiny-run"
    with (run_dir / "splits.tsv").open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    groups: dict[str, set[str]] = {}
    for row in rows:
        groups.setdefault(row["split"], set()).add(row["group"])
    assert set(groups) == {"train", "validation", "test"}
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["validation"])
    assert json.loads((run_dir / "history.json").read_text())["loss"] == tiny_training.histories[0]["loss"]
    # Paths are relative to the data set, so a run folder checked in elsewhere still finds its clips.
    for row in rows:
        assert not Path(row["path"]).is_absolute() and row["path"].startswith(("scream/", "non_scream/"))


def test_sidecar_records_contract_thresholds_and_int8_agreement(tiny_training) -> None:  # type: ignore[no-untyped-def]
    sidecar = json.loads(tiny_training.model_path.with_suffix(".json").read_text())
    assert sidecar["input"]["dtype"] == "int8" and sidecar["output"]["dtype"] == "int8"
    assert 0 < sidecar["thresholds"]["off"] <= sidecar["thresholds"]["on"] < 1
    assert sidecar["int8_check"]["decision_agreement"] >= 0.99
    assert sidecar["training"]["data"]["clips"] == {"scream": 24, "non_scream": 24}
    assert sidecar["size_bytes"] == tiny_training.model_path.stat().st_size


def test_edge_classifier_separates_unseen_synthetic_clips(tiny_model: Path, tmp_path: Path) -> None:
    fresh = make_synthetic_dataset(tmp_path / "fresh", per_class=12, seed=99, rates=(8000, 44100))
    classifier = Classifier(tiny_model)
    labels, peaks = [], []
    for path in sorted(fresh.rglob("*.wav")):
        report = analyse_file(path, classifier)
        labels.append(path.parent.name == "scream")
        peaks.append(report.peak_score)
    assert roc_auc(labels, peaks) >= 0.9


def test_export_refuses_int8_that_disagrees(tiny_training, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The agreement gate really gates: allow no window at all to differ, not even a borderline-free
    agreeing one (the allowance below zero), and nothing is published."""

    from train import export
    from train.model import build_model

    model = build_model(window_frames=96, mel_bands=40, feature_mean=-8.0, feature_std=3.0, width=4)
    model.compile(loss="binary_crossentropy")
    windows = np.random.default_rng(0).normal(-8, 3, size=(40, 96, 40)).astype(np.float32)
    monkeypatch.setattr(export, "allowed_disagreements", lambda judged: -1)
    with pytest.raises(export.ExportError, match=r"agrees with the float model .* at most -1 may differ"):
        export_random_windows(model, tmp_path / "m", windows, thresholds={"on": 0.5, "off": 0.4})
    assert list(tmp_path.iterdir()) == []


def test_int8_agreement_leaves_out_only_windows_within_one_output_step_of_on() -> None:
    """A float score within one int8 output step of `on` may round to either side: such windows are
    counted apart; every other flip counts against the model."""
    from train.export import decision_agreement

    floats = np.array([0.10, 0.50, 0.503, 0.90, 0.70, 0.495])
    int8s = np.array([0.10, 0.49, 0.51, 0.90, 0.40, 0.51])
    # 0.50 and 0.503 are within 0.004 of `on`; 0.495 is not, so its flip counts, like 0.70's.
    assert decision_agreement(floats, int8s, 0.5, 0.004) == (0.5, 2)
    assert decision_agreement(floats, int8s, 0.5, 0.0) == (pytest.approx(3 / 5), 1)  # only 0.50 itself is left out
    assert decision_agreement(floats[1:3], int8s[1:3], 0.5, 0.01) == (1.0, 2)  # nothing left to judge


def test_int8_gate_allows_one_percent_and_never_fewer_than_one_window() -> None:
    """Under 100 judged windows one flip is allowed (a 99% rule would allow none: one window of 59
    is 1.7%); from 200 on, 1% of them."""
    from train.export import allowed_disagreements

    judged = (0, 1, 59, 100, 199, 200, 250, 1000, 5309)
    assert [allowed_disagreements(n) for n in judged] == [1, 1, 1, 1, 1, 2, 2, 10, 53]


def test_export_strips_names_and_keeps_the_arithmetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exported flatbuffer carries no tensor names or signature, is smaller, and computes the
    same int8 outputs as the converter's own bytes."""
    pytest.importorskip("tensorflow")
    from ai_edge_litert.interpreter import Interpreter

    from train import export
    from train.model import build_ensemble, build_model

    members = [
        build_model(window_frames=96, mel_bands=40, feature_mean=-8.0, feature_std=3.0, width=4, seed=s, name=f"m{s}")
        for s in (0, 1)
    ]
    model = build_ensemble(members)
    representative = np.random.default_rng(0).normal(-8, 3, size=(16, 96, 40)).astype(np.float32)
    with monkeypatch.context() as patch:
        patch.setattr(export, "strip_names", lambda data: data)
        named = export.convert_int8(model, representative)
    stripped = export.convert_int8(model, representative)
    assert stripped == export.strip_names(named) and len(stripped) < 0.9 * len(named)

    def run(data: bytes) -> tuple[list[str], list[np.ndarray]]:
        """Tensor names, and every tensor's value (intermediates too) after each of 5 windows."""
        interpreter = Interpreter(model_content=data, experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
        (inp,), details = interpreter.get_input_details(), interpreter.get_tensor_details()
        scale, zero_point = inp["quantization"]
        values = []
        for window in np.random.default_rng(1).normal(-8, 3, size=(5, 96, 40)):
            x = np.clip(np.round(window / scale + zero_point), -128, 127).astype(np.int8)
            interpreter.set_tensor(inp["index"], x[None, :, :, None])
            interpreter.invoke()
            values += [interpreter.get_tensor(t["index"]).copy() for t in details if t["index"] != inp["index"]]
        return [t["name"] for t in details], values

    named_names, named_values = run(named)
    stripped_names, stripped_values = run(stripped)
    assert any("m1" in name for name in named_names) and not any(stripped_names)
    assert len(stripped_values) == len(named_values)
    for got, want in zip(stripped_values, named_values, strict=True):
        np.testing.assert_array_equal(got, want)
    # The windows reach varied activations, so the equality above means something.
    assert len(np.unique(np.concatenate([v.ravel() for v in named_values if v.dtype == np.int8]))) > 50


def tflite_ops(path: Path) -> set[str]:
    """The operators of a TF-Lite file (no delegate, which would hide them)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return {op["op_name"] for op in interpreter._get_ops_details()}


@pytest.mark.parametrize(("head", "pooling_op"), [("frequency", "AVERAGE_POOL_2D"), ("mean-max", "MAX_POOL_2D")])
def test_other_heads_export_and_metrics_follow_the_final_threshold(head: str, pooling_op: str, tmp_path: Path) -> None:
    """A model with the frequency or the mean-max head converts to full int8 (its pooling an int8
    op) and runs on the edge; the sidecar's metrics are computed at the operating point's `on`, not
    at the first threshold."""
    pytest.importorskip("tensorflow")
    from train.model import build_model

    model = build_model(window_frames=96, mel_bands=40, feature_mean=-8.0, feature_std=3.0, width=4, head=head)
    model.compile(loss="binary_crossentropy")
    windows = np.random.default_rng(1).normal(-8, 3, size=(40, 96, 40)).astype(np.float32)
    seen: list[float] = []

    def final_metrics(thresholds: dict[str, float]) -> dict[str, float]:
        seen.append(thresholds["on"])
        return {"at_on": thresholds["on"]}

    sidecar = export_random_windows(
        model,
        tmp_path / "m",
        windows,
        thresholds={"on": 0.5, "off": 0.4},
        metadata={"metrics": {"stale": True}},
        operating_point=lambda int8: {"on": 0.61, "off": 0.52, "patience_windows": 1, "patience_of": 1},
        final_metrics=final_metrics,
    )
    assert seen == [0.61]
    written = json.loads((tmp_path / "m.json").read_text())
    assert sidecar["metrics"] == written["metrics"] == {"at_on": 0.61}
    classifier = Classifier(tmp_path / "m.tflite")
    assert classifier.input_shape == (96, 40)
    assert 0.0 <= classifier.score(windows[0]) <= 1.0
    ops = tflite_ops(tmp_path / "m.tflite")
    assert pooling_op in ops and "MEAN" not in ops and "REDUCE_MAX" not in ops
    with pytest.raises(ValueError, match="unknown model head"):
        build_model(window_frames=96, mel_bands=40, feature_mean=0.0, feature_std=1.0, head="attention")


def test_ensemble_training_ships_one_model_averaging_its_members(synthetic_dataset: Path, tmp_path: Path) -> None:
    """members=2 trains two seeded networks and exports their mean as one int8 model the edge runs."""
    pytest.importorskip("tensorflow")
    import keras

    from train.model import build_ensemble, build_model
    from train.pipeline import TrainConfig, train

    # As long as the tiny single model trains: less, and the scores of 31 check windows crowd the
    # threshold, where one int8 rounding is 3% of the agreement the export requires.
    # Softened at export (output_logit_max): both members' units, recorded in the sidecar.
    config = TrainConfig(
        epochs=6,
        steps_per_epoch=12,
        batch_size=32,
        width=8,
        members=2,
        output_logit_max=2.0,
        cache_dir=str(tmp_path / "c"),
        verbose=0,
    )
    result = train(synthetic_dataset, tmp_path / "ens", config=config)
    assert len(result.histories) == 2 and all(h["loss"] for h in result.histories)
    assert result.sidecar["training"]["config"]["output_logit_max"] == 2.0
    assert result.sidecar["training"]["output_temperature"] >= 1.0
    history = json.loads((tmp_path / "ens-run" / "history.json").read_text())
    assert [len(m["loss"]) for m in history["members"]] == result.sidecar["training"]["epochs_run"]
    assert result.sidecar["int8_check"]["decision_agreement"] >= 0.99
    classifier = Classifier(result.model_path)
    window = np.random.default_rng(3).normal(-8, 3, size=classifier.input_shape).astype(np.float32)
    assert 0.0 <= classifier.score(window) <= 1.0

    # The combined network's output is exactly the mean of its members'.
    members = [
        build_model(window_frames=96, mel_bands=40, feature_mean=-8.0, feature_std=3.0, width=4, seed=s, name=f"m{s}")
        for s in (1, 2)
    ]
    ensemble = build_ensemble(members)
    assert isinstance(ensemble, keras.Model)
    batch = np.random.default_rng(4).normal(-8, 3, size=(5, 96, 40, 1)).astype(np.float32)
    expected = np.mean([m.predict(batch, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(batch, verbose=0), expected, atol=1e-6)


def _logits(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def test_softening_divides_each_scream_logit_and_nothing_else() -> None:
    """A single network's scores become sigmoid(logit / T) (the same ranking); an ensemble's every
    member is softened; a distilling network's teacher head is left alone."""
    pytest.importorskip("tensorflow")
    from train.model import build_ensemble, build_model, scream_only, soften_output

    def tiny(seed: int, **kw: Any) -> Any:
        return build_model(
            window_frames=96,
            mel_bands=40,
            feature_mean=-8.0,
            feature_std=3.0,
            width=4,
            seed=seed,
            name=f"m{seed}",
            **kw,
        )

    batch = np.random.default_rng(5).normal(-8, 3, size=(6, 96, 40, 1)).astype(np.float32)
    single = tiny(0)
    before = _logits(single.predict(batch, verbose=0).reshape(-1))
    assert soften_output(single, 2.5) == 1
    after = single.predict(batch, verbose=0).reshape(-1)
    np.testing.assert_allclose(after, 1 / (1 + np.exp(-before / 2.5)), atol=1e-5)

    members = [tiny(1), tiny(2)]
    member_logits = [_logits(m.predict(batch, verbose=0).reshape(-1)) for m in members]
    ensemble = build_ensemble(members)
    assert soften_output(ensemble, 4.0) == 2
    expected = np.mean([1 / (1 + np.exp(-z / 4.0)) for z in member_logits], axis=0)
    np.testing.assert_allclose(ensemble.predict(batch, verbose=0).reshape(-1), expected, atol=1e-5)

    distilling = tiny(3, distill_dim=5, distill_target="scores")
    teacher_before = distilling.predict(batch, verbose=0)["teacher"]
    assert soften_output(scream_only(distilling), 2.0) == 1
    np.testing.assert_allclose(distilling.predict(batch, verbose=0)["teacher"], teacher_before, atol=1e-6)
    for wrong in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            soften_output(single, wrong)


def test_output_temperature_brings_the_largest_logit_down_and_never_up() -> None:
    from train.model import output_temperature

    assert output_temperature(np.array([0.2, 0.5, 0.99]), 3.0) == pytest.approx(np.log(99) / 3.0)
    assert output_temperature(np.array([0.2, 0.9]), 3.0) == 1.0  # logit 2.2: left as trained
    assert output_temperature(np.array([1.0]), 3.0) == pytest.approx(np.log(1e12) / 3.0, rel=1e-3)  # float32 1.0
    with pytest.raises(ValueError, match="logit_max must be > 0"):
        output_temperature(np.array([0.9]), 0.0)


def test_a_saturated_int8_output_ties_its_top_scores_and_a_softened_one_ranks_them(tmp_path: Path) -> None:
    """Why output_logit_max exists: int8 holds a sigmoid in steps of 1/256 up to 0.996, so windows the
    float model scores from 0.997 to 0.9999 all come out of int8 as one score; softened so the largest
    logit is 3, int8 keeps them apart in the float model's order."""
    pytest.importorskip("tensorflow")
    from train.model import build_model, output_temperature, soften_output

    model = build_model(window_frames=96, mel_bands=40, feature_mean=-8.0, feature_std=3.0, width=4, seed=7)
    model.compile(loss="binary_crossentropy")
    unit = model.get_layer("scream")
    kernel, bias = unit.get_weights()
    windows = np.random.default_rng(6).normal(-8, 3, size=(60, 96, 40)).astype(np.float32)
    z = _logits(model.predict(windows[..., None], verbose=0).reshape(-1))
    # Shift and stretch the logits to 6..9 (scores 0.9975..0.9999): every one above int8's top step.
    spread = 3.0 / max(float(np.ptp(z)), 1e-6)
    unit.set_weights([kernel * spread, (bias - z.min()) * spread + 6.0])
    floats = model.predict(windows[..., None], verbose=0).reshape(-1)
    assert floats.min() > 0.9961

    def int8_scores(name: str) -> np.ndarray:
        export_random_windows(model, tmp_path / name, windows, thresholds={"on": 0.5, "off": 0.4})
        classifier = Classifier(tmp_path / f"{name}.tflite")
        return np.array([classifier.score(w) for w in windows])

    saturated = int8_scores("saturated")
    assert np.unique(saturated).size == 1 and saturated[0] == pytest.approx(255 / 256)
    temperature = output_temperature(floats, 3.0)
    assert temperature == pytest.approx(9.0 / 3.0, rel=0.02)
    soften_output(model, temperature)
    softened = int8_scores("softened")
    assert np.unique(softened).size >= 12 and softened.max() < 0.96  # p 0.88-0.95: 18 steps of 1/256
    order = np.corrcoef(np.argsort(np.argsort(softened)), np.argsort(np.argsort(floats)))[0, 1]
    assert order > 0.95
