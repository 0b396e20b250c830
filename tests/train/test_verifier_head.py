"""`scream verifier-head`: the second stage's head fitted on a model's train split through the real
YAMNet reader (a YAMNet-shaped stand-in here), scored on the edge exactly as it was fitted, and
measured by `scream verification --head`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.classifier import sha256_file
from edge.cli import EXIT_FATAL, main
from edge.config import parse_config
from edge.verifier import HEAD_FORMAT, EventVerifier
from tests.helpers import make_stand_in_verifier
from train import metrics
from train.corpus.teacher import EMBEDDING_TENSOR, WINDOW_SAMPLES, clip_windows
from train.data import WaveformCache, load_dataset
from train.evaluate import restrict_to_split

pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def stand_in_yamnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out as ../shared/models/yamnet: yamnet.tflite (the stand-in, with its embedding
    tensor named as YAMNet's) and yamnet_class_map.csv."""
    pytest.importorskip("tensorflow")
    folder = tmp_path_factory.mktemp("yamnet")
    make_stand_in_verifier(folder, stem="yamnet")
    return folder


def test_a_head_fitted_on_the_train_split_is_scored_on_the_edge_as_fitted(
    tiny_training: Any, synthetic_dataset: Path, stand_in_yamnet: Path, tmp_path: Path
) -> None:
    from train.corpus.teacher import YamnetTeacher
    from train.teacher_row import Head

    splits = tiny_training.model_path.parent / f"{tiny_training.model_path.stem}-run" / "splits.tsv"
    out = tmp_path / "heads" / "head.json"
    argv = ["verifier-head", "--data", str(synthetic_dataset), "--splits", str(splits)]
    argv += ["--teacher", str(stand_in_yamnet), "--out", str(out), "--cache", str(tmp_path / "waves")]
    assert main(argv) == 0
    written = json.loads(out.read_text())
    assert written["format"] == HEAD_FORMAT and written["tensor"] == EMBEDDING_TENSOR
    assert written["model_sha256"] == sha256_file(stand_in_yamnet / "yamnet.tflite")
    dataset = load_dataset(synthetic_dataset)
    train = restrict_to_split(dataset.clips, splits, "train", dataset.base)
    validation = restrict_to_split(dataset.clips, splits, "validation", dataset.base)
    fit = written["fit"]
    assert fit["data"] == synthetic_dataset.name == load_dataset(synthetic_dataset).root.name
    assert (fit["train_clips"], fit["train_screams"]) == (len(train), sum(c.is_scream for c in train))
    assert (fit["validation_clips"], fit["validation_screams"]) == (
        len(validation),
        sum(c.is_scream for c in validation),
    )
    assert 0 < fit["train_scream_windows"] < fit["train_windows"] and fit["c"] in (0.01, 0.1, 1.0)
    assert set(fit["validation_window_pr_auc_by_c"]) == {"0.01", "0.1", "1"}
    assert len(written["coef"]) == 4
    # `--mixes 3`: each loud scream window clean and mixed three times, the non-screams as they were.
    more = tmp_path / "heads" / "head-mixes3.json"
    with pytest.raises(SystemExit) as refused:
        main([*argv[:-4], "--out", str(more), "--mixes", "-1"])
    assert refused.value.code == 2 and not more.exists()
    assert main([*argv[:-4], "--out", str(more), "--cache", str(tmp_path / "waves"), "--mixes", "3"]) == 0
    fit3 = json.loads(more.read_text())["fit"]
    assert (fit["mixes"], fit3["mixes"]) == (1, 3)
    assert fit3["train_scream_windows"] == 2 * fit["train_scream_windows"]
    assert fit3["train_windows"] - fit3["train_scream_windows"] == fit["train_windows"] - fit["train_scream_windows"]

    # The edge's verifier with this head gives, window by window, what the training side's head gives
    # on the training side's YAMNet reader: no skew between fitting and serving.
    verifier = EventVerifier(stand_in_yamnet / "yamnet.tflite", classes=["Screaming"], threshold=0.5, head=out)
    teacher = YamnetTeacher(stand_in_yamnet)
    head = Head(np.array(written["coef"]), written["intercept"], fit["c"])
    cache = WaveformCache(tmp_path / "waves", 16000)
    test = restrict_to_split(dataset.clips, splits, "test", dataset.base)
    peaks, labels = [], []
    for clip in test:
        windows = clip_windows(cache.load(clip.path))
        edge = [verifier.score(w) for w in windows]
        fitted = [float(head.score(teacher.analyse(w).embedding[None, :])[0]) for w in windows]
        assert edge == pytest.approx(fitted, abs=1e-5)
        peaks.append(max(edge))
        labels.append(clip.is_scream)
    assert all(w.size == WINDOW_SAMPLES for w in windows)
    # It learnt the task: the unseen test split's screams rank above its non-screams.
    assert metrics.roc_auc(np.array(labels), np.array(peaks)) > 0.9


def test_verification_with_a_head_recommends_the_head(
    tiny_training: Any, synthetic_dataset: Path, stand_in_yamnet: Path, tmp_path: Path
) -> None:
    splits = tiny_training.model_path.parent / f"{tiny_training.model_path.stem}-run" / "splits.tsv"
    cache = str(tmp_path / "waves")
    head = tmp_path / "head.json"
    argv = ["verifier-head", "--data", str(synthetic_dataset), "--splits", str(splits), "--cache", cache]
    assert main([*argv, "--teacher", str(stand_in_yamnet), "--out", str(head), "--head-c", "0.5", "2"]) == 0
    fit = json.loads(head.read_text())["fit"]
    assert set(fit["validation_window_pr_auc_by_c"]) == {"0.5", "2"} and fit["c"] in (0.5, 2.0)
    out = tmp_path / "verification"
    argv = ["verification", "--model", str(tiny_training.model_path), "--data", str(synthetic_dataset)]
    argv += ["--splits", str(splits), "--verifier", str(stand_in_yamnet / "yamnet.tflite"), "--head", str(head)]
    argv += ["--out", str(out), "--cache", cache, "--scenes", "1", "--budget", "40", "--patience", "1", "1"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["verifier"]["head"] == str(head) and report["verifier"]["classes"] == []
    assert report["patience"] == [1, 1] and report["decisions"] == "1 of 1 window"
    markdown = (out / "report.md").read_text()
    assert f'head = "{head}"' in markdown and "classes =" not in markdown
    # The recommended lines are a config `listen` takes: the pair, the patience and the head.
    recommended = tomllib.loads(markdown.split("```toml\n")[1].split("```")[0])
    config = parse_config(recommended)
    assert (config.detector.patience_windows, config.detector.patience_of) == (1, 1)
    assert config.detector.on_threshold == report["points"]["verified"]["on"] and config.verifier.head == str(head)
    assert f"head `{head}`'s score over the windows that raised it" in markdown
    assert report["candidates_judged"] > 0


def test_a_head_needs_both_splits(
    synthetic_dataset: Path, stand_in_yamnet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    splits = tmp_path / "splits.tsv"
    splits.write_text("split\tpath\tlabel\tgroup\tcategory\n")
    argv = ["verifier-head", "--data", str(synthetic_dataset), "--splits", str(splits)]
    argv += ["--teacher", str(stand_in_yamnet), "--out", str(tmp_path / "head.json")]
    assert main(argv) == EXIT_FATAL
    assert "has no rows for split 'train': the head is fitted on the train split" in capsys.readouterr().err
    assert not (tmp_path / "head.json").exists()
