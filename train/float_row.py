"""`scream float-row`: what the int8 export costs on a cross-validation's own fold scenes.

Every fold of `scream crossval` keeps the float32 TF-Lite twin of its int8 model
(`fold-K-run/model-float.tflite`, the same network before quantisation). The export checks that the
two decide alike on the test windows at the model's own `on`; a scene curve asks more: recall at
<= 2 and <= 5 false alarms per hour is read where the highest scores are told apart, and an int8
sigmoid output holds scores in steps of 1/256 up to 0.996, so the top windows can tie there.

Each fold's test scenes are rebuilt exactly as the crossval built them (train/teacher_row.py does
the same for the teacher: the int8 row reproduces the crossval's headline, which the report checks),
scored through the live windows by the int8 model and by its float twin, decided by the fold's own
live decisions at every `on` (the float row's thresholds reach past 0.995), and paired scream by
scream (float minus int8). Per fold: the share of scene windows at int8's top step, and how often
the two decide alike at the fold's own `on`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.classifier import Classifier, open_interpreter
from edge.pipeline import detection_settings
from train.data import DataError, WaveformCache, load_dataset
from train.scenes import (
    StreamScores,
    curve_headline,
    curve_thresholds,
    float_thresholds,
    paired_headline,
    scene_curve,
    score_stream,
)
from train.teacher_row import crossval_settings, fold_model, format_value, paired_cells, rebuilt_scenes, reproduces

ROWS = ("int8", "float")


def _log(message: str) -> None:
    print(message, flush=True)


class FloatTwin:
    """A fold's float32 TF-Lite model behind the int8 classifier's interface (its sidecar, window
    shape), so the edge's streaming scorer runs it on the same windows."""

    def __init__(self, path: Path, int8: Classifier) -> None:
        self.sidecar = int8.sidecar
        self.input_shape = int8.input_shape
        self._interpreter, _ = open_interpreter(path, runtime=None, num_threads=1, what="float model")
        (inp,), (out,) = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        expected = [1, *self.input_shape, 1]
        if [int(v) for v in inp["shape"]] != expected or np.dtype(inp["dtype"]) != np.float32:
            raise DataError(
                f"{path}: input {list(inp['shape'])} {np.dtype(inp['dtype']).name}, expected {expected} float32"
            )
        self._input, self._output = inp["index"], out["index"]

    def score(self, window: npt.NDArray[np.float32]) -> float:
        self._interpreter.set_tensor(self._input, window[None, :, :, None].astype(np.float32))
        self._interpreter.invoke()
        return float(self._interpreter.get_tensor(self._output).reshape(-1)[0])


def _scores(scenes: list[tuple[StreamScores, list[dict[str, Any]]]]) -> npt.NDArray[np.float64]:
    return np.array([w.score for scored, _ in scenes for w in scored.windows], dtype=np.float64)


def float_row(
    crossval_dir: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    cache_dir: str = "",
) -> dict[str, Any]:
    """Score `crossval_dir`'s fold scenes with each fold's int8 model and its float twin; writes
    report.json and report.md in `out_dir`."""
    started = time.monotonic()
    source = Path(crossval_dir)
    settings = crossval_settings(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(data)
    curves: dict[str, list[dict[str, Any]]] = {row: [] for row in ROWS}
    folds = []
    cache: WaveformCache | None = None
    for k in range(settings["folds"]):
        int8, split = fold_model(source, k, dataset)
        test = split["test"]
        try:
            floats = FloatTwin(source / f"fold-{k}-run" / "model-float.tflite", int8)
        except (OSError, ValueError) as exc:  # a missing or broken float twin
            raise DataError(f"{source}: fold {k} is incomplete ({exc})") from exc
        side = int8.sidecar
        decisions, _ = detection_settings(side)
        cache = cache or WaveformCache.at(cache_dir, side.features.sample_rate_hz)
        waves = [cache.load(c.path) for c in test]
        scenes: dict[str, list[tuple[StreamScores, list[dict[str, Any]]]]] = {row: [] for row in ROWS}
        for scene in rebuilt_scenes(settings, test, waves, side.features):
            scenes["int8"].append((score_stream(int8, scene.audio), scene.truth))
            scenes["float"].append((score_stream(floats, scene.audio), scene.truth))
        curves["int8"].append(scene_curve(scenes["int8"], decisions, curve_thresholds(scenes["int8"])))
        curves["float"].append(
            scene_curve(
                scenes["float"],
                decisions,
                float_thresholds(scenes["float"]),
            )
        )
        int8_scores, float_scores = _scores(scenes["int8"]), _scores(scenes["float"])
        quant = side.output_quant
        top_step = float((127 - quant.zero_point) * quant.scale)
        on = decisions.on_threshold
        folds.append(
            {
                "fold": k,
                "windows": int(int8_scores.size),
                "int8_top_step": round(top_step, 6),
                "windows_at_int8_top": int(np.count_nonzero(int8_scores >= top_step)),
                "float_windows_above_int8_top": int(np.count_nonzero(float_scores > top_step)),
                "on": on,
                "decision_agreement_at_on": round(float(np.mean((int8_scores >= on) == (float_scores >= on))), 5),
            }
        )
        _log(f"== fold {k + 1} of {settings['folds']}: {folds[-1]}")
    seed = settings["seed"]
    rows: dict[str, dict[str, Any]] = {
        row: {"headline": curve_headline(curves[row], seed=seed), "curves": curves[row]} for row in ROWS
    }
    report: dict[str, Any] = {
        "crossval": str(source),
        "data": str(data),
        "settings": {k: settings[k] for k in ("folds", "seed", "scenes", "level_spread_db", "split_by")},
        "rows": rows,
        "float_minus_int8": paired_headline(curves["float"], curves["int8"], seed=seed),
        "reproduces_crossval_headline": reproduces(rows["int8"]["headline"], settings["headline"]),
        "folds": folds,
        "seconds": round(time.monotonic() - started, 1),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(float_row_markdown(report))
    _log(f"float row: {out / 'report.md'}")
    return report


def float_row_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# int8 against float on the cross-validation's fold scenes",
        "",
        f"`scream float-row --crossval {report['crossval']}`: {s['folds']} folds ({s['split_by']}), {s['scenes']} "
        f"scenes per fold, level spread {s['level_spread_db']:g} dB, seed {s['seed']}. Each fold's int8 model and "
        "its float twin (`fold-K-run/model-float.tflite`) on the same rebuilt scenes, windows and live decisions; "
        "recall at a budget picks each fold's best `on` (a curve, not an operating point); intervals resample "
        "scream sources.",
        "",
        "| row | recall at <= 2 FA/h | recall at <= 5 FA/h | FA/h at recall 0.8 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in ROWS:
        h = report["rows"][row]["headline"]
        lines.append(
            f"| {row} | {format_value(h['recall_at_2_fa_per_hour'], h.get('recall_at_2_fa_per_hour_interval_95'))} "
            f"| {format_value(h['recall_at_5_fa_per_hour'], h.get('recall_at_5_fa_per_hour_interval_95'))} "
            f"| {format_value(h['fa_per_hour_at_recall_0.8'], h.get('fa_per_hour_at_recall_0.8_interval_95'))} |"
        )
    p = report["float_minus_int8"]
    cells = paired_cells(p)
    lines += [
        "",
        f"Float minus int8, the same inserted screams: {cells[0]} at <= 2 and {cells[1]} at <= 5 false alarms/h.",
        "",
        "| fold | scene windows | at int8's top step | float above it | int8 and float decide alike at `on` |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in report["folds"]:
        lines.append(
            f"| {f['fold']} | {f['windows']} | {f['windows_at_int8_top']} ({f['int8_top_step']:g}) "
            f"| {f['float_windows_above_int8_top']} | {f['decision_agreement_at_on']:.3%} at {f['on']:g} |"
        )
    lines += [
        "",
        "The int8 row "
        + (
            "gives exactly the headline of the crossval's report: the scenes are the ones it measured."
            if report["reproduces_crossval_headline"]
            else "does NOT give the crossval report's headline: the data set or the run changed since."
        ),
        "",
        f"{report['seconds']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"
