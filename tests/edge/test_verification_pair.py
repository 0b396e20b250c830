"""The second stage's settings follow the model: a pair recorded in its sidecar (`verification`) is
what a `[verifier]` with threshold 0 runs, at start, on a hot reload, in `detect`, `check-model` and
`listen --check-config`; a model without the pair the config needs is refused and the running one kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.classifier import Classifier, ModelSidecar, VerificationPair, sha256_file
from edge.config import parse_config
from edge.errors import ModelError
from edge.pipeline import DetectionPipeline, site_settings, verifier_plan
from edge.verifier import EventVerifier
from tests.helpers import model_with_pairs as model_with
from tests.helpers import pair_entry, write_stand_in_head

ROOT = Path(__file__).resolve().parents[2]


def verifier_config(stand_in_verifier: Path, **section: Any) -> Any:
    return parse_config({"verifier": {"model": str(stand_in_verifier), **section}})


def test_a_sidecar_without_pairs_loads_with_none(tiny_model: Path) -> None:
    assert ModelSidecar.load(tiny_model.with_suffix(".json")).verification == ()


def test_a_recorded_pair_is_read_and_holds_for_its_own_verdict_only(tiny_model: Path, tmp_path: Path) -> None:
    sha = "a" * 64
    model = model_with(
        tiny_model,
        tmp_path,
        [
            pair_entry(sha, classes=["Screaming", "Shout"], patience=[2, 3]),
            pair_entry(sha, head_sha256="b" * 64, classes=[], threshold=0.8),
        ],
    )
    side = ModelSidecar.load(model.with_suffix(".json"))
    classes, head = side.verification
    assert classes == VerificationPair(
        verifier_sha256=sha,
        head_sha256="",
        classes=("Screaming", "Shout"),
        on_threshold=0.71,
        threshold=0.33,
        attempts=3,
        patience=(2, 3),
        chosen="a test",
    )
    assert side.pair_for(sha, "", ("Shout", "Screaming")) is classes  # the order of classes does not matter
    assert side.pair_for(sha, "b" * 64, ()) is head and head.verdict == "head bbbbbbbbbbbb"
    assert side.pair_for(sha, "", ("Screaming",)) is None  # other classes
    assert side.pair_for(sha, "c" * 64, ()) is None  # another head file
    assert side.pair_for("d" * 64, "", ("Screaming", "Shout")) is None  # another verifier file
    assert VerificationPair.from_sidecar(classes.to_sidecar()) == classes


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"verifier_sha256": "abc"}, "verifier_sha256 must be a sha256"),
        ({"on_threshold": 1.0}, r"on_threshold must be in \(0, 1\), got 1\.0"),
        ({"threshold": 0}, r"threshold must be in \(0, 1\), got 0"),
        ({"attempts": 0}, "attempts must be in 1-16, got 0"),
        ({"attempts": True}, "attempts must be in 1-16"),
        ({"classes": []}, "classes must be a list of class names, empty exactly when head_sha256 is set"),
        ({"head_sha256": "e" * 64}, "classes must be a list of class names, empty exactly when head_sha256"),
        ({"patience": [3, 2]}, r"patience must be null or \[k, n\]"),
        ({"on_threshold": "0.7"}, "on_threshold must be in"),
    ],
)
def test_a_malformed_pair_makes_the_sidecar_refused_with_the_field_named(
    tiny_model: Path, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    model = model_with(tiny_model, tmp_path, [pair_entry("a" * 64, **changes)])
    with pytest.raises(ModelError, match=message):
        ModelSidecar.load(model.with_suffix(".json"))


def test_a_sidecar_with_two_pairs_for_one_verdict_or_no_list_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    twice = model_with(tiny_model, tmp_path / "a", [pair_entry("a" * 64), pair_entry("a" * 64, threshold=0.5)])
    with pytest.raises(ModelError, match="two pairs for the same verifier and verdict"):
        ModelSidecar.load(twice.with_suffix(".json"))
    sidecar = json.loads(tiny_model.with_suffix(".json").read_text()) | {"verification": {"on": 0.5}}
    (tmp_path / "b.json").write_text(json.dumps(sidecar))
    with pytest.raises(ModelError, match="verification must be a list, got dict"):
        ModelSidecar.load(tmp_path / "b.json")
    with pytest.raises(ModelError, match="has no 'attempts'"):
        VerificationPair.from_sidecar({k: v for k, v in pair_entry("a" * 64).items() if k != "attempts"})


def test_threshold_0_runs_the_models_pair_its_on_threshold_and_attempts(
    tiny_model: Path, stand_in_verifier: Path, tmp_path: Path
) -> None:
    sha = sha256_file(stand_in_verifier)
    model = model_with(tiny_model, tmp_path, [pair_entry("f" * 64, threshold=0.9), pair_entry(sha)])
    classifier = Classifier(model)
    own_on = classifier.sidecar.operating_point.on_threshold
    assert own_on != 0.71
    pipeline = DetectionPipeline.for_model(classifier, verifier_config(stand_in_verifier), source_rate_hz=16000)
    verifier = pipeline.verifier
    assert isinstance(verifier, EventVerifier) and verifier.requested == (0.0, 0)
    assert (verifier.threshold, verifier.attempts) == (0.33, 3)
    assert (pipeline.detector.verify_threshold, pipeline.detector.verify_attempts) == (0.33, 3)
    assert pipeline.detector.params.on_threshold == 0.71
    off = classifier.sidecar.operating_point.off_threshold
    assert pipeline.detector.params.off_threshold == pytest.approx(off * 0.71 / own_on)  # the ratio is kept
    assert verifier.status()["settings"] == "the model's pair"

    # What the site sets itself wins, key by key: its `on`, its attempts, its threshold.
    site = parse_config(
        {"verifier": {"model": str(stand_in_verifier), "attempts": 5}, "detector": {"on_threshold": 0.6}}
    )
    decisions, _, plan = site_settings(classifier.sidecar, site, EventVerifier.from_config(site.verifier))
    assert decisions.on_threshold == 0.6 and plan is not None and (plan.threshold, plan.attempts) == (0.33, 5)
    own = verifier_config(stand_in_verifier, threshold=0.2)
    decisions, _, plan = site_settings(classifier.sidecar, own, EventVerifier.from_config(own.verifier))
    assert plan is not None and (plan.threshold, plan.attempts, plan.pair) == (0.2, 1, None)
    assert decisions.on_threshold == own_on  # a threshold of its own: nothing of the pair applies


def test_a_pair_chosen_with_its_own_patience_brings_it(
    tiny_model: Path, stand_in_verifier: Path, tmp_path: Path
) -> None:
    model = model_with(tiny_model, tmp_path, [pair_entry(sha256_file(stand_in_verifier), patience=[2, 4])])
    side = Classifier(model).sidecar
    config = verifier_config(stand_in_verifier)
    decisions, _, _ = site_settings(side, config, EventVerifier.from_config(config.verifier))
    assert (decisions.patience_windows, decisions.patience_of) == (2, 4)
    kept = parse_config(
        {"verifier": {"model": str(stand_in_verifier)}, "detector": {"patience_windows": 1, "patience_of": 1}}
    )
    decisions, _, _ = site_settings(side, kept, EventVerifier.from_config(kept.verifier))
    assert (decisions.patience_windows, decisions.patience_of) == (1, 1)


def test_a_model_without_the_pair_the_config_needs_is_refused_by_name(
    tiny_model: Path, stand_in_verifier: Path, tmp_path: Path
) -> None:
    model = model_with(tiny_model, tmp_path, [pair_entry("f" * 64)])
    verifier = EventVerifier.from_config(verifier_config(stand_in_verifier).verifier)
    assert verifier is not None
    with pytest.raises(
        ModelError,
        match=r"has no verification pair for this verifier \(its pairs: Screaming on "
        r"verifier ffffffffffff\): record one with 'scream verification --record'",
    ):
        verifier_plan(verifier, Classifier(model).sidecar)
    with pytest.raises(ModelError, match=r"\(its pairs: none\)"):
        DetectionPipeline.for_model(Classifier(tiny_model), verifier_config(stand_in_verifier), source_rate_hz=16000)
    # Built by hand without the plan, a verifier asking for the model's pair would veto nothing: refused.
    side = Classifier(model).sidecar
    with pytest.raises(ValueError, match="runs with that plan"):
        DetectionPipeline(
            Classifier(model),
            side.features,
            side.operating_point,
            hop_frames=25,
            source_rate_hz=16000,
            verifier=verifier,
        )


def test_a_head_pair_holds_for_that_head_file_only(tiny_model: Path, stand_in_verifier: Path, tmp_path: Path) -> None:
    head = write_stand_in_head(tmp_path / "head.json", stand_in_verifier, [1.0, 0.0, 0.0, 2.0])
    entry = pair_entry(sha256_file(stand_in_verifier), head_sha256=sha256_file(head), classes=[], threshold=0.6)
    model = model_with(tiny_model, tmp_path, [entry])
    config = verifier_config(stand_in_verifier, head=str(head))
    pipeline = DetectionPipeline.for_model(Classifier(model), config, source_rate_hz=16000)
    assert pipeline.detector.verify_threshold == 0.6
    # The same verifier scoring by classes has no pair here, and neither has another head.
    with pytest.raises(ModelError, match="no verification pair"):
        DetectionPipeline.for_model(Classifier(model), verifier_config(stand_in_verifier), source_rate_hz=16000)
    other = write_stand_in_head(tmp_path / "other.json", stand_in_verifier, [1.0, 0.0, 0.0, 2.5])
    with pytest.raises(ModelError, match="no verification pair"):
        DetectionPipeline.for_model(
            Classifier(model), verifier_config(stand_in_verifier, head=str(other)), source_rate_hz=16000
        )


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", *args], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )


def test_check_model_with_a_config_says_how_the_site_runs_the_model_or_refuses_it(
    tiny_model: Path, stand_in_verifier: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[verifier]\nmodel = "{stand_in_verifier}"\n')
    paired = model_with(tiny_model, tmp_path / "paired", [pair_entry(sha256_file(stand_in_verifier))])
    ok = run_cli("check-model", str(paired), "--config", str(config))
    assert ok.returncode == 0, ok.stderr
    shown = json.loads(ok.stdout)
    assert shown["verification"][0]["threshold"] == 0.33
    assert "on 0.71" in shown["site"] and "threshold 0.33, up to 3 verdicts a candidate" in shown["site"]
    assert "the model's pair (a test)" in shown["site"]
    unpaired = model_with(tiny_model, tmp_path / "unpaired", [])
    refused = run_cli("check-model", str(unpaired), "--config", str(config))
    assert refused.returncode == 2 and "has no verification pair for this verifier" in refused.stderr
    assert run_cli("check-model", str(unpaired)).returncode == 0  # without the config: a sound model
    listen = run_cli("listen", "--config", str(config), "--model", str(paired), "--check-config")
    assert listen.returncode == 0 and "threshold 0.33, up to 3 verdicts a candidate" in listen.stdout, listen.stderr
    detect = run_cli("detect", "--config", str(config), "--model", str(unpaired), str(tmp_path))
    assert detect.returncode == 2 and "no verification pair" in detect.stderr
