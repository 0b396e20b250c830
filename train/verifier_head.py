"""`scream verifier-head`: fit the second stage's head, a logistic regression on YAMNet's embedding.

`[verifier] head` (edge.verifier `EmbeddingHead`) scores a candidate event's windows by a head on the
verifier model's 1024-d embedding instead of by its AudioSet "Screaming" class. On the leave-source-
out folds the head, fitted on each fold's train split, verified the recipe's events better than
"Screaming" did (models/scream-v5-crossval/teacher-row-balanced). This fits the head that ships the
same way, on a model's own train split (its splits.tsv), so that `scream verification` can then
choose and measure the pair of `on` and head threshold on that model's untouched validation and test
splits:

- examples as `scream teacher-row` makes them (train/teacher_row.py `head_examples`): every window of
  the non-screams; each scream's loud windows, clean and mixed into a non-scream at 0-20 dB
  (`--mixes N` times, default once);
- its L2 strength chosen among `HEAD_C` (or `--head-c`) by window PR AUC on the validation split;
- written as a `scream-verifier-head/1` JSON file: the tensor it reads, the sha256 of the model file it
  was fitted on (the edge refuses a head on another model), the weights and what it was fitted on.

The teacher runs at training time; on a Pi, only the edge's verifier runs the same model file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.verifier import HEAD_FORMAT
from train.corpus.teacher import EMBEDDING_TENSOR, RATE_HZ, Teacher
from train.data import DataError, WaveformCache, load_dataset, write_atomically
from train.evaluate import restrict_to_split
from train.teacher_row import (
    HEAD_C,
    MIXES_PER_SCREAM_WINDOW,
    Head,
    TeacherWindows,
    clip_level_examples,
    fit_head,
    head_examples,
)


def fit_verifier_head(
    data: str | os.PathLike[str],
    *,
    splits_file: str | os.PathLike[str],
    teacher: Teacher,
    model_sha256: str,
    out: str | os.PathLike[str],
    cache_dir: str = "",
    seed: int = 0,
    tensor: str = EMBEDDING_TENSOR,
    head_c: tuple[float, ...] = HEAD_C,
    mixes: int = MIXES_PER_SCREAM_WINDOW,
) -> dict[str, Any]:
    """Fit the head on the train split of `splits_file`, choose its strength on the validation split,
    and write it to `out` (JSON). Returns what was written."""
    started = time.monotonic()
    dataset = load_dataset(data)
    cache = WaveformCache.at(cache_dir, RATE_HZ)
    try:
        train = restrict_to_split(dataset.clips, Path(splits_file), "train", dataset.base)
        validation = restrict_to_split(dataset.clips, Path(splits_file), "validation", dataset.base)
    except ValueError as exc:  # a split with no rows: the head needs both
        raise DataError(f"{exc}: the head is fitted on the train split and chosen on the validation split") from exc
    windows = TeacherWindows(teacher)
    examples = head_examples(windows, train, cache, np.random.default_rng(seed), mixes=mixes)
    head, tried = fit_head(examples, clip_level_examples(windows, validation, cache), head_c)
    if not isinstance(head, Head):
        raise TypeError("the edge reads logistic heads only")
    written: dict[str, Any] = {
        "format": HEAD_FORMAT,
        "tensor": tensor,
        "model_sha256": model_sha256,
        "coef": [float(v) for v in head.coef],
        "intercept": head.intercept,
        "fit": {
            "teacher": getattr(teacher, "identity", ""),
            "data": dataset.root.name,  # as a model's sidecar names its data: no machine's path
            "splits": str(splits_file),
            "seed": seed,
            "mixes": mixes,
            "c": head.c,
            "validation_window_pr_auc_by_c": tried,
            "train_clips": len(train),
            "train_screams": sum(c.is_scream for c in train),
            "train_windows": int(examples[1].size),
            "train_scream_windows": int(examples[1].sum()),
            "validation_clips": len(validation),
            "validation_screams": sum(c.is_scream for c in validation),
            "teacher_windows_scored": windows.windows_scored,
            "seconds": round(time.monotonic() - started, 1),
        },
    }
    text = json.dumps(written, indent=1) + "\n"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_atomically(Path(out), lambda handle: handle.write(text.encode()))
    return written
