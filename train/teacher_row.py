"""`scream teacher-row`: the teacher itself, measured on a cross-validation's own folds and scenes.

Issue 17 asks for the teacher (YAMNet, ../shared/models/yamnet/) as a row of the crossval report,
beside the student recipes. Given a `scream crossval --out` folder, every fold's test scenes are
rebuilt exactly as that run built them (the same clips in the same order, the same seeds, scenes per
fold and level spread: train/scenes.py `stream_and_scene`), cut into the windows the live path scores
(the same start, end and loudness per hop: edge.pipeline `StreamingScorer`), and decided by the fold
model's own live decisions (edge.detector through `scene_curve`). Only the window score changes:

- `yamnet-screaming`: YAMNet's AudioSet class "Screaming" for the window. Nothing is trained.
- `yamnet-head`: a logistic regression on YAMNet's 1024-d embedding of the window, fitted on the
  fold's train split (its non-screams' windows; its screams' loud windows, clean and mixed into its
  non-screams at 0-20 dB as scenes mix them), its regularisation chosen by window PR AUC on the
  fold's validation split. `head_kind`, `head_screams`, `head_mixes`, `head_negative_mixes` and
  `head_seed` vary that head for a screen (models/scream-v5-crossval/teacher-row-heads/); the
  teacher's windows are kept on disk (`TeacherWindows` with a store), so such a screen scores them once.

Each row's pooled headline is paired, scream by scream, with the crossval recipe's
(train/scenes.py `paired_headline`), and clip ROC AUC (a clip's peak window) is reported beside the
recipe's. The teacher runs at training time only; edge/ never imports this module.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from edge.classifier import Classifier
from edge.config import DetectorConfig
from edge.detector import DecisionParams
from edge.features import FeatureParams
from edge.pipeline import StreamingScorer, WindowScore, chunked, detection_settings
from train import metrics
from train.augment import mix_at_snr
from train.corpus.teacher import WINDOW_SAMPLES, Teacher, clip_windows
from train.crossval import tests_fold
from train.data import (
    Clip,
    DataError,
    Dataset,
    WaveformCache,
    cache_directory,
    load_dataset,
    regroup,
    write_atomically,
)
from train.evaluate import restrict_to_split, score_clips
from train.scenes import (
    CURVE_FLOOR,
    FALSE_ALARM_BUDGETS,
    StreamScores,
    Verdict,
    audited_headline,
    check_floor,
    curve_headline,
    curve_of,
    curve_thresholds,
    decide,
    decide_verdicts,
    float_thresholds,
    matched_scream,
    paired_headline,
    rounded_onset,
    scene_curve,
    score_stream,
    stream_and_scene,
    within_budget,
)
from train.splits import fold_splits

FloatArray = npt.NDArray[np.float32]

SCREAM_CLASS = "Screaming"  # AudioSet class 11 in YAMNet's class map
ROWS = ("yamnet-screaming", "yamnet-head")
RECIPE = "crossval-recipe"  # the crossval's own fold models, scored again on the same scenes
# A second stage: the recipe's events, each kept only if the teacher's score of the windows that
# raised it (from the event's first hit to the window that detected it: no added latency) reaches
# `verify_on`. Every pair of the recipe's `on` and the teacher's `verify_on` is a point of its curve.
CASCADES = {f"{RECIPE} verified by {row}": row for row in ROWS}
HEAD_C = (0.01, 0.1, 1.0)  # inverse L2 strengths tried on the validation split
ACTIVE_DB = 10.0  # a scream clip's teacher windows within this many dB of its loudest are its screams
MIXES_PER_SCREAM_WINDOW = 1
SNR_DB = (0.0, 20.0)  # as scenes insert screams (train/scenes.py build_scene)
BACKGROUND_POOL = 400  # non-scream excerpts kept as backgrounds for the mixed screams


def _log(message: str) -> None:
    print(message, flush=True)


class LevelsOnly:
    """A window scorer that scores nothing: the live path's window grid and loudness, for a teacher."""

    def __init__(self, window_frames: int, mel_bands: int) -> None:
        self.input_shape = (window_frames, mel_bands)

    def score(self, window: FloatArray) -> float:
        return 0.0


def window_grid(audio: FloatArray, features: FeatureParams, window_frames: int, hop_frames: int) -> list[WindowScore]:
    """The windows (start, end, loudness) that `score_stream` scores for this audio, every hop: the
    same streaming scorer fed the same 100 ms chunks."""
    scorer = StreamingScorer(
        LevelsOnly(window_frames, features.mel_bands),
        features,
        hop_frames=hop_frames,
        source_rate_hz=features.sample_rate_hz,
    )
    rate = features.sample_rate_hz
    return [w for chunk in chunked(audio, rate // 10) for w in scorer.push(chunk)] + scorer.flush()


def window_store(cache_dir: str | os.PathLike[str] | None) -> Path:
    """Where the teacher's windows are kept: beside the waveform cache (`--cache`, or its default)."""
    return cache_directory(cache_dir) / "teacher-windows"


def excerpt(audio: FloatArray, start: int, length: int = WINDOW_SAMPLES) -> FloatArray:
    """`length` samples from `start`, silence past the end."""
    out = np.zeros(length, dtype=np.float32)
    piece = audio[max(0, start) : start + length]
    out[: piece.size] = piece
    return out


@dataclass
class Head:
    """A logistic regression on unit-length teacher embeddings."""

    coef: npt.NDArray[np.float64]
    intercept: float
    c: float

    def score(self, embeddings: FloatArray) -> npt.NDArray[np.float64]:
        from scipy.special import expit

        return np.asarray(expit(embeddings.astype(np.float64) @ self.coef + self.intercept), dtype=np.float64)


@dataclass
class MlpHead:
    """One hidden layer of rectified units on unit-length teacher embeddings, then a logistic unit."""

    w1: npt.NDArray[np.float64]  # [dim, hidden]
    b1: npt.NDArray[np.float64]  # [hidden]
    w2: npt.NDArray[np.float64]  # [hidden]
    b2: float
    c: float

    def score(self, embeddings: FloatArray) -> npt.NDArray[np.float64]:
        from scipy.special import expit

        hidden = np.maximum(embeddings.astype(np.float64) @ self.w1 + self.b1, 0.0)
        return np.asarray(expit(hidden @ self.w2 + self.b2), dtype=np.float64)


AnyHead = Head | MlpHead
HEAD_KINDS = ("logistic", "mlp")
MLP_HIDDEN = 32
# The screams the teacher's head is fitted on: the fold's train split as its splits file names it
# ("audited": without the screams `--min-teacher-scream` left out), or with them put back ("all").
HEAD_SCREAMS = ("audited", "all")


class TeacherWindows:
    """The teacher's scream score and embedding of single windows, and of clips window by window
    (clips are cached by path: a clip is train, validation or test in several folds).

    With a `store` folder, each batch of windows is also kept on disk by the sha1 of its samples and
    the teacher's identity, so a second run over the same folds and scenes (another head, other
    attempts) reads what the first one scored instead of running the teacher again."""

    def __init__(self, teacher: Teacher, store: str | os.PathLike[str] | None = None) -> None:
        self.teacher = teacher
        if SCREAM_CLASS not in teacher.class_names:
            raise DataError(f"the teacher has no class {SCREAM_CLASS!r}")
        self.scream_index = teacher.class_names.index(SCREAM_CLASS)
        self._clips: dict[Path, tuple[npt.NDArray[np.float64], FloatArray, npt.NDArray[np.float64]]] = {}
        self._store = (
            Path(store) / hashlib.sha1(teacher.identity.encode()).hexdigest()[:12] if store is not None else None
        )
        if self._store is not None:
            self._store.mkdir(parents=True, exist_ok=True)
        self.windows_scored = 0
        self.windows_read = 0

    def windows(self, excerpts: list[FloatArray]) -> tuple[npt.NDArray[np.float64], FloatArray]:
        path = self._stored(excerpts)
        if path is not None and path.exists():
            try:
                with np.load(path) as data:
                    scores, stacked = data["scores"], data["embeddings"]
                if scores.shape == (len(excerpts),) and stacked.shape[0] == len(excerpts):
                    self.windows_read += len(excerpts)
                    return scores.astype(np.float64), stacked.astype(np.float32)
            except (OSError, ValueError, KeyError):
                pass  # a torn file is scored again
        scores, embeddings = [], []
        for x in excerpts:
            result = self.teacher.analyse(x)
            scores.append(float(result.max_scores[self.scream_index]))
            embeddings.append(result.embedding)
        self.windows_scored += len(excerpts)
        dim = embeddings[0].size if embeddings else 0
        out = np.array(scores), np.array(embeddings, dtype=np.float32).reshape(len(excerpts), dim)
        if path is not None:
            write_atomically(path, lambda f: np.savez(f, scores=out[0], embeddings=out[1]))
        return out

    def _stored(self, excerpts: list[FloatArray]) -> Path | None:
        if self._store is None or not excerpts:
            return None
        digest = hashlib.sha1()
        for x in excerpts:
            digest.update(np.ascontiguousarray(x, dtype=np.float32).tobytes())
            digest.update(b"|")
        return self._store / f"{digest.hexdigest()}.npz"

    def clip(self, clip: Clip, wave: FloatArray) -> tuple[npt.NDArray[np.float64], FloatArray, npt.NDArray[np.float64]]:
        """Per teacher window of the clip: scream score, embedding, loudness (dB, RMS)."""
        key = clip.path.resolve()
        if key not in self._clips:
            parts = list(clip_windows(wave))
            scores, embeddings = self.windows(parts)
            levels = np.array([10 * np.log10(float(np.mean(p.astype(np.float64) ** 2)) + 1e-12) for p in parts])
            self._clips[key] = (scores, embeddings, levels)
        return self._clips[key]


def head_examples(
    windows: TeacherWindows,
    clips: list[Clip],
    cache: WaveformCache,
    rng: np.random.Generator,
    *,
    mixes: int = MIXES_PER_SCREAM_WINDOW,
    negative_mixes: int = 0,
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Embeddings and labels: every non-scream window; each scream clip's loud windows, clean and
    `mixes` times mixed into a non-scream excerpt at 0-20 dB; with `negative_mixes`, each non-scream
    clip's loudest window as often mixed the same way (so mixing is no cue for a scream). The
    default draws the same examples as before either option existed."""
    if mixes < 0 or negative_mixes < 0:
        raise ValueError(f"mixes per window cannot be negative ({mixes}, {negative_mixes})")
    xs: list[FloatArray] = []
    ys: list[bool] = []
    backgrounds: list[FloatArray] = []
    loudest: list[FloatArray] = []  # each non-scream's loudest window, when they are mixed too
    for clip in clips:
        if clip.is_scream:
            continue
        wave = cache.load(clip.path)
        _, embeddings, levels = windows.clip(clip, wave)
        xs.append(embeddings)
        ys += [False] * len(embeddings)
        if negative_mixes:
            loudest.append(clip_windows(wave)[int(np.argmax(levels))])
        if wave.size and len(backgrounds) < BACKGROUND_POOL:
            backgrounds.append(excerpt(wave, int(rng.integers(0, max(1, wave.size - WINDOW_SAMPLES)))))
    if not backgrounds:
        raise DataError("the fold's train split has no non-screams to mix its screams into")

    def mixed(window: FloatArray) -> FloatArray:
        background = backgrounds[int(rng.integers(len(backgrounds)))]
        return np.clip(mix_at_snr(window, background, float(rng.uniform(*SNR_DB))), -1.0, 1.0).astype(np.float32)

    mixtures: list[FloatArray] = []
    for clip in clips:
        if not clip.is_scream:
            continue
        wave = cache.load(clip.path)
        _, embeddings, levels = windows.clip(clip, wave)
        loud = np.flatnonzero(levels >= levels.max() - ACTIVE_DB)
        xs.append(embeddings[loud])
        ys += [True] * loud.size
        parts = clip_windows(wave)
        mixtures += [mixed(parts[i]) for i in loud for _ in range(mixes)]
    if mixtures:
        _, mixed_embeddings = windows.windows(mixtures)
        xs.append(mixed_embeddings)
        ys += [True] * len(mixtures)
    # Drawn after the screams' mixtures, so that the default's draws are what they were.
    mixed_negatives = [mixed(window) for window in loudest for _ in range(negative_mixes)]
    if mixed_negatives:
        xs.append(windows.windows(mixed_negatives)[1])
        ys += [False] * len(mixed_negatives)
    labels = np.array(ys, dtype=bool)
    if labels.all() or not labels.any():
        raise DataError("the fold's train split needs both screams and non-screams for the teacher's head")
    return np.concatenate(xs).astype(np.float32), labels


def clip_level_examples(
    windows: TeacherWindows, clips: list[Clip], cache: WaveformCache
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Every window of every clip with its clip's label (validation: ranking, not training)."""
    xs, ys = [], []
    for clip in clips:
        _, embeddings, _ = windows.clip(clip, cache.load(clip.path))
        xs.append(embeddings)
        ys += [clip.is_scream] * len(embeddings)
    return np.concatenate(xs).astype(np.float32), np.array(ys, dtype=bool)


def balanced_weights(y: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """Per example, the weight that gives each class half of the loss (scikit-learn's "balanced")."""
    return np.where(y, y.size / (2.0 * max(int(y.sum()), 1)), y.size / (2.0 * max(int((~y).sum()), 1)))


def fit_logistic(x: FloatArray, y: npt.NDArray[np.bool_], c: float) -> Head:
    """Class-balanced L2 logistic regression (scikit-learn's objective: C times the weighted log loss
    plus half the squared weights, the intercept unpenalised), by L-BFGS (scipy)."""
    from scipy.optimize import minimize
    from scipy.special import expit

    data = x.astype(np.float64)
    target = y.astype(np.float64)
    weight = balanced_weights(y)

    def objective(params: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        w, b = params[:-1], params[-1]
        z = data @ w + b
        loss = c * float(np.sum(weight * (np.logaddexp(0.0, z) - target * z))) + 0.5 * float(w @ w)
        g = c * weight * (expit(z) - target)
        return loss, np.append(data.T @ g + w, g.sum())

    result = minimize(
        objective,
        np.zeros(data.shape[1] + 1),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 5000, "ftol": 1e-14, "gtol": 1e-9},
    )
    return Head(result.x[:-1], float(result.x[-1]), c)


def fit_mlp(x: FloatArray, y: npt.NDArray[np.bool_], c: float, hidden: int = MLP_HIDDEN, seed: int = 0) -> MlpHead:
    """The logistic objective of `fit_logistic` through one hidden rectified layer (L2 on both weight
    layers, biases unpenalised), by L-BFGS from a seeded start."""
    from scipy.optimize import minimize
    from scipy.special import expit

    data = x.astype(np.float64)
    dim = data.shape[1]
    target = y.astype(np.float64)
    weight = balanced_weights(y)
    sizes = (dim * hidden, hidden, hidden, 1)
    cuts = np.cumsum(sizes)[:-1]

    def objective(params: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        w1, b1, w2, b2 = np.split(params, cuts)
        w1 = w1.reshape(dim, hidden)
        pre = data @ w1 + b1
        active = np.maximum(pre, 0.0)
        z = active @ w2 + b2[0]
        loss = c * float(np.sum(weight * (np.logaddexp(0.0, z) - target * z))) + 0.5 * float(np.sum(w1 * w1) + w2 @ w2)
        g = c * weight * (expit(z) - target)
        back = np.outer(g, w2) * (pre > 0)
        grad = (data.T @ back + w1, back.sum(axis=0), active.T @ g + w2, np.array([g.sum()]))
        return loss, np.concatenate([part.ravel() for part in grad])

    rng = np.random.default_rng(seed)
    start = np.concatenate(
        [rng.standard_normal(dim * hidden), np.zeros(hidden), rng.standard_normal(hidden) / np.sqrt(hidden), [0.0]]
    )
    result = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 500, "ftol": 1e-12})
    w1, b1, w2, b2 = np.split(result.x, cuts)
    return MlpHead(w1.reshape(dim, hidden), b1, w2, float(b2[0]), c)


def fit_head(
    train: tuple[FloatArray, npt.NDArray[np.bool_]],
    validation: tuple[FloatArray, npt.NDArray[np.bool_]],
    strengths: tuple[float, ...] = HEAD_C,
    kind: str = "logistic",
) -> tuple[AnyHead, dict[str, float]]:
    """The head of `kind` and `strengths` (inverse L2 strengths) with the best validation window PR AUC."""
    if kind not in HEAD_KINDS:
        raise ValueError(f"head kind must be one of {', '.join(HEAD_KINDS)}, got {kind!r}")
    best: tuple[float, AnyHead] | None = None
    tried = {}
    for c in strengths:
        head: AnyHead = fit_logistic(train[0], train[1], c) if kind == "logistic" else fit_mlp(train[0], train[1], c)
        pr_auc = metrics.average_precision(validation[1], head.score(validation[0]))
        tried[f"{c:g}"] = round(pr_auc, 4)
        if best is None or pr_auc > best[0]:
            best = (pr_auc, head)
    if best is None:
        raise ValueError("no regularisation strengths to try")
    return best[1], tried


def score_scene(
    windows: TeacherWindows,
    head: AnyHead,
    audio: FloatArray,
    features: FeatureParams,
    window_frames: int,
    hop_frames: int,
) -> dict[str, StreamScores]:
    """Each row's StreamScores of one scene: the live grid, each window's score from the teacher."""
    grid = window_grid(audio, features, window_frames, hop_frames)
    rate = features.sample_rate_hz
    scream, embeddings = windows.windows([excerpt(audio, round(w.start_s * rate)) for w in grid])
    seconds = audio.size / rate
    head_scores = head.score(embeddings) if len(grid) else np.zeros(0)

    def scored(values: npt.NDArray[np.float64]) -> StreamScores:
        return StreamScores(
            [
                WindowScore(w.index, w.start_s, w.end_s, float(v), w.level_dbfs)
                for w, v in zip(grid, values, strict=True)
            ],
            seconds,
        )

    return {"yamnet-screaming": scored(scream), "yamnet-head": scored(head_scores)}


def verify_scores(verdicts: list[Verdict], teacher: StreamScores) -> npt.NDArray[np.float64]:
    """Per verdict, the teacher's highest score over the windows it hears: those starting at or after
    its first hit and ending by its detection (windows are in time order)."""
    starts = np.array([w.start_s for w in teacher.windows])
    ends = np.array([w.end_s for w in teacher.windows])
    scores = np.array([w.score for w in teacher.windows])
    out = np.zeros(len(verdicts))
    for i, (start_s, detected_s) in enumerate(verdicts):
        lo = int(np.searchsorted(starts, start_s - 1e-6, side="left"))
        hi = int(np.searchsorted(ends, detected_s + 1e-6, side="right"))
        out[i] = scores[lo:hi].max() if hi > lo else 0.0
    return out


def pareto_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows no other row beats with as few false alarms and more screams found: all that a
    curve headline (the most found within a budget, the fewest alarms reaching a recall) can pick."""
    front: list[dict[str, Any]] = []
    best = -1
    for row in sorted(rows, key=lambda r: (r["false_alarms"], -sum(r["hits"]))):
        if sum(row["hits"]) > best:
            front.append(row)
            best = sum(row["hits"])
    return front


def judged_candidates(
    scored: StreamScores,
    taught: StreamScores,
    truth: list[dict[str, Any]],
    params: DecisionParams,
    attempts: int = 1,
) -> tuple[list[list[Verdict]], list[npt.NDArray[np.float64]], list[int | None]]:
    """The recipe's candidates at `params` (spans paired by position, as match_events pairs them):
    each one's verdicts (train/scenes.py `decide_verdicts`), the teacher's score of each of them (all
    scored in one `verify_scores` call) and the inserted scream its span matches (None: a false alarm
    if it fires)."""
    _, spans, verdicts, _ = decide_verdicts(scored, params, attempts)
    n = min(len(verdicts), len(spans))
    flat = verify_scores([v for asked in verdicts[:n] for v in asked], taught)
    scores = np.split(flat, np.cumsum([len(asked) for asked in verdicts[:n]])[:-1]) if n else []
    return verdicts[:n], scores, [matched_scream(span, truth) for span in spans[:n]]


def cascade_curve(
    recipe: list[tuple[StreamScores, list[dict[str, Any]]]],
    teacher: list[tuple[StreamScores, list[dict[str, Any]]]],
    decisions: DecisionParams,
    thresholds: list[float],
    verify_thresholds: list[float],
    attempts: int = 1,
) -> dict[str, Any]:
    """`scene_curve` for the recipe's events verified by the teacher: a row per (`on`, `verify_on`)
    on the curve's Pareto front. With `attempts` > 1 a vetoed candidate is judged again as `listen`'s
    `[verifier] attempts` judges it (train/scenes.py `decide_verdicts`) and alarms at its first
    passing verdict. An event is matched as `match_events` matches it (`matched_scream`); a second
    alarm on a scream already found is neither a hit nor false."""
    grid: dict[tuple[float, float], dict[str, Any]] = {
        (on, v): {"on": on, "verify_on": v, "false_alarms": 0, "hits": [], "onset_s": []}
        for on in thresholds
        for v in verify_thresholds
    }
    for (scored, truth), (taught, _) in zip(recipe, teacher, strict=True):
        for on in thresholds:
            verdicts, scores, matched = judged_candidates(scored, taught, truth, decisions.with_threshold(on), attempts)
            # Per candidate, the best verdict so far at each of its verdicts: a threshold's first
            # passing verdict is where that running best first reaches it.
            best = [np.maximum.accumulate(part) for part in scores]
            for v in verify_thresholds:
                found: dict[int, float] = {}  # scream -> onset to the first kept alarm on it
                false_alarms = 0
                for i, running in enumerate(best):
                    first = int(np.searchsorted(running, v, side="left"))
                    if first == running.size:
                        continue  # vetoed at every verdict
                    if (hit := matched[i]) is None:
                        false_alarms += 1
                    else:
                        found.setdefault(hit, verdicts[i][first][1] - truth[hit]["onset_s"])
                row = grid[(on, v)]
                row["hits"] += [int(i in found) for i in range(len(truth))]
                row["onset_s"] += [rounded_onset(found.get(i)) for i in range(len(truth))]
                row["false_alarms"] += false_alarms
    return curve_of(recipe, decisions, pareto_rows(list(grid.values())))


# Where a cascade loses: what became of each inserted scream at a point of its curve.
OUTCOMES = (
    "found",  # a candidate on it passed a verdict
    "vetoed",  # the recipe raised a candidate on it at this `on`; every verdict fell short of `verify_on`
    "below_on",  # no candidate on it at this `on`; the recipe raises one at the lowest `on` its curve tries
    "never_raised",  # no candidate on it at any `on` the curve tries
    "no_point",  # the fold's curve has no point within the budget: nothing fires there
)
AUDIT_BANDS = (0.05, 0.2, 0.5)  # edges of the teacher-audit bands the outcomes are counted in
SNR_BANDS_DB = (5.0, 10.0, 15.0)  # edges of the SNR bands (scenes insert at 0-20 dB)


def clip_at(layout: list[tuple[float, Clip]], stream_s: float, t: float) -> Clip:
    """The non-scream playing `t` s into a scene. A scene repeats its stream when the screams need
    more time than the stream holds (train/scenes.py `build_scene`), so `t` wraps at `stream_s`."""
    at = t % stream_s if stream_s > 0 else t
    starts = np.array([start for start, _ in layout])
    return layout[max(int(np.searchsorted(starts, at, side="right")) - 1, 0)][1]


def band(value: float | None, edges: tuple[float, ...]) -> str:
    """The band of `value` among `edges`: "< a", "a-b", ..., ">= z"; "unknown" for None."""
    if value is None:
        return "unknown"
    if value < edges[0]:
        return f"< {edges[0]:g}"
    for low, high in itertools.pairwise(edges):
        if value < high:
            return f"{low:g}-{high:g}"
    return f">= {edges[-1]:g}"


def band_names(edges: tuple[float, ...]) -> list[str]:
    """Every `band` of `edges`, lowest first, then "unknown"."""
    return [band(edges[0] - 1, edges), *(band(e, edges) for e in edges), "unknown"]


def cascade_losses(
    recipe: list[tuple[StreamScores, list[dict[str, Any]]]],
    teacher: list[tuple[StreamScores, list[dict[str, Any]]]],
    layouts: list[tuple[list[tuple[float, Clip]], float]],
    decisions: DecisionParams,
    point: dict[str, Any] | None,
    lowest_on: float,
    attempts: int = 1,
) -> dict[str, Any]:
    """At one point of a cascade's curve (`on`, `verify_on`: a row of `cascade_curve`), each inserted
    scream's outcome (OUTCOMES) with its teacher audit and SNR, and the non-scream (family and
    category) each false alarm fired in, with `layouts` each scene's (layout, stream seconds). The
    screams found and the false alarms are the point's own (`cascade_curve` decides them alike);
    with no point (none within a budget) every scream is "no_point"."""
    screams: list[dict[str, Any]] = []
    alarms: list[dict[str, Any]] = []
    for (scored, truth), (taught, _), (layout, stream_s) in zip(recipe, teacher, layouts, strict=True):
        if point is None:
            screams += [_outcome("no_point", t) for t in truth]
            continue
        verdicts, scores, matches = judged_candidates(
            scored, taught, truth, decisions.with_threshold(point["on"]), attempts
        )
        window_s = scored.windows[0].end_s - scored.windows[0].start_s if scored.windows else 0.0
        raised: set[int] = set()
        found: dict[int, tuple[Verdict, int]] = {}  # scream -> the first passing verdict on it, its number
        for asked, judged, matched in zip(verdicts, scores, matches, strict=True):
            passing = np.flatnonzero(judged >= point["verify_on"])
            if matched is not None:
                raised.add(matched)
                if passing.size:
                    found.setdefault(matched, (asked[int(passing[0])], int(passing[0]) + 1))
            elif passing.size:
                at_s = asked[int(passing[0])][0]  # the passing verdict's first window
                clip = clip_at(layout, stream_s, at_s)
                alarms.append({"at_s": round(at_s, 2), "family": clip.family, "category": clip.category or "-"})
        _, low_spans, _ = decide(scored, decisions.with_threshold(lowest_on))
        ever = {m for span in low_spans if (m := matched_scream(span, truth)) is not None}
        for j, t in enumerate(truth):
            outcome = (
                "found" if j in found else "vetoed" if j in raised else "below_on" if j in ever else "never_raised"
            )
            screams.append(_outcome(outcome, t))
            if j in found:  # how long the student heard the scream before its hit, then the decision
                (start_s, detected_s), verdict = found[j]
                hit_end_s = start_s + window_s
                screams[-1] |= {
                    "hit_s": round(hit_end_s - t["onset_s"], 3),
                    "decision_s": round(detected_s - hit_end_s, 3),
                    "verdict": verdict,
                }
    return {"screams": screams, "false_alarms": alarms}


def _outcome(outcome: str, scream: dict[str, Any]) -> dict[str, Any]:
    return {"outcome": outcome, "teacher_scream": scream.get("teacher_scream"), "snr_db": scream["snr_db"]}


def _point(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A curve row's point: its thresholds and what it found and raised."""
    if row is None:
        return None
    return {
        "on": row["on"],
        "verify_on": row["verify_on"],
        "found": sum(row["hits"]),
        "false_alarms": row["false_alarms"],
    }


def losses_summary(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """`cascade_losses` of every fold (each at its own point) pooled: the outcomes, the outcomes by
    teacher-audit band and by SNR band, and the false alarms by non-scream family and category."""
    screams = [s for f in folds for s in f["screams"]]
    alarms = [a for f in folds for a in f["false_alarms"]]

    def counts(items: list[dict[str, Any]]) -> dict[str, int]:
        tally = collections.Counter(s["outcome"] for s in items)
        return {outcome: tally[outcome] for outcome in OUTCOMES}

    def by(key: str, edges: tuple[float, ...]) -> dict[str, dict[str, int]]:
        groups: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for s in screams:
            groups[band(s[key], edges)].append(s)
        return {name: counts(groups[name]) for name in band_names(edges) if name in groups}

    def ranked(key: str) -> dict[str, int]:
        tally = collections.Counter(a[key] if key == "family" else f"{a['family']}/{a['category']}" for a in alarms)
        return dict(sorted(tally.items(), key=lambda kv: (-kv[1], kv[0])))

    timed = [s for s in screams if "hit_s" in s]
    onset = [s["hit_s"] + s["decision_s"] for s in timed]
    return {
        "points": [f["point"] for f in folds],
        "screams": len(screams),
        "outcomes": counts(screams),
        # Of the screams found: from the scream's onset to the end of the window that first hit in
        # the passing verdict, from there to the alarm (patience, and the verdict), and in all.
        "onset": {
            "median_hit_s": round(float(np.median([s["hit_s"] for s in timed])), 3) if timed else None,
            "median_decision_s": round(float(np.median([s["decision_s"] for s in timed])), 3) if timed else None,
            "median_onset_s": round(float(np.median(onset)), 3) if timed else None,
            "within_0_5_s": round(float(np.mean(np.array(onset) <= 0.5)), 3) if timed else None,
            "at_first_verdict": round(float(np.mean([s["verdict"] == 1 for s in timed])), 3) if timed else None,
        },
        "by_teacher_audit": by("teacher_scream", AUDIT_BANDS),
        "by_snr_db": by("snr_db", SNR_BANDS_DB),
        "false_alarms": len(alarms),
        "false_alarms_by_family": ranked("family"),
        "false_alarms_by_category": ranked("category"),
    }


def reproduces(ours: dict[str, Any], theirs: dict[str, Any] | None) -> bool:
    """Whether a headline measured again gives the crossval report's (every field the report has: one
    written before a field was added lacks it, and is still checked on all the others)."""
    return bool(theirs) and all(k in ours and ours[k] == v for k, v in (theirs or {}).items())


def patience_site(patience: tuple[int, int] | None) -> DetectorConfig | None:
    """A site's `[detector]` deciding with k of n windows, or None (each model's own patience)."""
    return DetectorConfig(patience_windows=patience[0], patience_of=patience[1]) if patience else None


def crossval_settings(crossval_dir: Path) -> dict[str, Any]:
    path = crossval_dir / "report.json"
    try:
        report = json.loads(path.read_text())
        return {
            "folds": int(report["folds"]),
            "seed": int(report["seed"]),
            "scenes": int(report["scenes_per_fold"]),
            "level_spread_db": float(report.get("level_spread_db", 0.0)),
            "split_by": str(report.get("split_by", "group")),
            "split_seed": int(report.get("split_seed", report["seed"])),
            "headline": report.get("headline"),
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a `scream crossval` report ({exc})") from exc


def fold_model(
    source: Path, k: int, dataset: Dataset, splits: tuple[str, ...] = ("test",)
) -> tuple[Classifier, dict[str, list[Clip]]]:
    """Fold `k` of the crossval in `source`: its int8 model and its splits' clips, refused when the
    model, its sidecar or its splits file is missing or broken, or its test split is not what the
    data set holds now."""
    model = source / f"fold-{k}.tflite"
    splits_file = source / f"fold-{k}-run" / "splits.tsv"
    try:
        classifier = Classifier(model, expected_features=FeatureParams())
        clips = {s: restrict_to_split(dataset.clips, splits_file, s, dataset.base) for s in splits}
    except (OSError, ValueError) as exc:
        raise DataError(f"{source}: fold {k} is incomplete ({exc})") from exc
    if "test" in clips and not tests_fold(model, clips["test"], dataset.base):
        raise DataError(f"{source}: fold-{k} tests clips that are not in {dataset.base}")
    return classifier, clips


def audit_left_out(dataset: Dataset, settings: dict[str, Any], k: int, split: dict[str, list[Clip]]) -> list[Clip]:
    """Fold `k`'s train screams that the crossval's audit (`--min-teacher-scream`) left out of its
    splits file: the fold dealt again as the crossval dealt it, less every clip the file names. Refused
    when the deal does not give the file's test split (other data, or another dealer)."""
    dealt = fold_splits(
        regroup(dataset, settings["split_by"]).clips,
        settings["folds"],
        k,
        seed=settings["split_seed"],
        balance_screams=settings["split_by"] == "source",
    )
    named = {c.path.resolve() for clips in split.values() for c in clips}
    if {c.path.resolve() for c in dealt["test"]} != {c.path.resolve() for c in split["test"]}:
        raise DataError(f"fold {k} dealt again does not test the clips its splits file names")
    extra = [c for c in dealt["train"] if c.path.resolve() not in named]
    if any(not c.is_scream for c in extra):
        raise DataError(f"fold {k} dealt again trains on non-screams its splits file does not name")
    return extra


class RebuiltScene(NamedTuple):
    audio: FloatArray  # the scene: the non-scream stream (repeated if short) with the screams inserted
    truth: list[dict[str, Any]]  # the inserted screams
    layout: list[tuple[float, Clip]]  # where each non-scream starts in the stream (s)
    stream_s: float  # the stream's length: the scene repeats it from there


def rebuilt_scenes(
    settings: dict[str, Any], clips: list[Clip], waves: list[FloatArray], features: FeatureParams
) -> Iterator[RebuiltScene]:
    """A fold's test scenes (audio, inserted screams, and the non-screams under them) as its crossval
    built them: the same clips, orderings, levels and seeds (`crossval_settings`), one at a time."""
    for s in range(settings["scenes"]):
        stream, scene, truth, layout = stream_and_scene(
            clips, waves, features, settings["seed"] + s, level_spread_db=settings["level_spread_db"]
        )
        yield RebuiltScene(scene, truth, layout, stream.size / features.sample_rate_hz)


def teacher_row(
    crossval_dir: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    teacher: Teacher,
    *,
    cache_dir: str = "",
    head_c: tuple[float, ...] = HEAD_C,
    patience: tuple[int, int] | None = None,
    attempts: int = 1,
    head_kind: str = "logistic",
    head_screams: str = "audited",
    head_mixes: int = MIXES_PER_SCREAM_WINDOW,
    head_negative_mixes: int = 0,
    head_seed: int | None = None,
    cascade_floor: float = CURVE_FLOOR,
) -> dict[str, Any]:
    """Measure the teacher on `crossval_dir`'s folds and scenes; writes report.json and report.md.
    `patience` (k, n) decides every row, the fold models' too, with k of n windows instead of each
    fold model's own (what a site's `[detector] patience_windows/patience_of` does). `attempts`: the
    cascades judge a vetoed candidate again up to that many verdicts (`[verifier] attempts`).
    `cascade_floor`: the lowest quantile of the recipe's scene window scores the cascades try as
    `on` (train/scenes.py `curve_thresholds`); the recipe's own row keeps the default grid."""
    started = time.monotonic()
    if head_screams not in HEAD_SCREAMS:
        raise ValueError(f"head_screams must be one of {', '.join(HEAD_SCREAMS)}, got {head_screams!r}")
    check_floor(cascade_floor)  # before any fold is scored, not when the first fold's cascades are
    source = Path(crossval_dir)
    settings = crossval_settings(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(data)
    # The teacher's windows are kept beside the waveforms: the same folds scored again read them.
    windows = TeacherWindows(teacher, store=window_store(cache_dir))
    # The head's mixtures are drawn from the crossval's seed unless given another: `head_seed` refits
    # the heads on other draws of the same clips (the spread of a head change across draws).
    head_seed = settings["seed"] if head_seed is None else head_seed
    rng = np.random.default_rng(head_seed)
    cache: WaveformCache | None = None
    curves: dict[str, list[dict[str, Any]]] = {row: [] for row in (*ROWS, RECIPE, *CASCADES)}
    clip_labels: list[bool] = []
    clip_scores: dict[str, list[float]] = {row: [] for row in ROWS}
    recipe_clip_scores: list[float] = []
    folds = []
    # Per cascade and budget, each fold's outcomes at its point within the budget (cascade_losses).
    losses: dict[str, dict[float, list[dict[str, Any]]]] = {n: {b: [] for b in FALSE_ALARM_BUDGETS} for n in CASCADES}
    site = patience_site(patience)
    for k in range(settings["folds"]):
        classifier, split = fold_model(source, k, dataset, ("train", "validation", "test"))
        side = classifier.sidecar
        decisions, hop = detection_settings(side, site)
        features = side.features
        cache = cache or WaveformCache.at(cache_dir, features.sample_rate_hz)
        test_waves = [cache.load(c.path) for c in split["test"]]
        _log(f"== fold {k + 1} of {settings['folds']}: the teacher's head on {len(split['train'])} train clips")
        train = split["train"] + (audit_left_out(dataset, settings, k, split) if head_screams == "all" else [])
        head, tried = fit_head(
            head_examples(windows, train, cache, rng, mixes=head_mixes, negative_mixes=head_negative_mixes),
            clip_level_examples(windows, split["validation"], cache),
            head_c,
            head_kind,
        )
        recipe_clip_scores += [s.peak for s in score_clips(classifier, split["test"], test_waves)]
        for clip, wave in zip(split["test"], test_waves, strict=True):
            scream, embeddings, _ = windows.clip(clip, wave)
            clip_labels.append(clip.is_scream)
            clip_scores["yamnet-screaming"].append(float(scream.max()))
            clip_scores["yamnet-head"].append(float(head.score(embeddings).max()))
        scenes: dict[str, list[tuple[StreamScores, list[dict[str, Any]]]]] = {row: [] for row in (*ROWS, RECIPE)}
        layouts = []
        for s, rebuilt in enumerate(rebuilt_scenes(settings, split["test"], test_waves, features)):
            scene, truth = rebuilt.audio, rebuilt.truth
            _log(f"   scene {s + 1} of {settings['scenes']}: {scene.size / features.sample_rate_hz / 60:.1f} min")
            for row, scored in score_scene(windows, head, scene, features, side.window_frames, hop).items():
                scenes[row].append((scored, truth))
            scenes[RECIPE].append((score_stream(classifier, scene), truth))
            layouts.append((rebuilt.layout, rebuilt.stream_s))
        # The teacher's scores are float and run on towards 1: its thresholds (alone, and as the
        # cascades' verifier) on the float grid, the int8 recipe's on the int8 one.
        for row in ROWS:
            curves[row].append(scene_curve(scenes[row], decisions, float_thresholds(scenes[row])))
        ons = curve_thresholds(scenes[RECIPE])
        curves[RECIPE].append(scene_curve(scenes[RECIPE], decisions, ons))
        cascade_ons = curve_thresholds(scenes[RECIPE], floor=cascade_floor)
        for name, row in CASCADES.items():
            curves[name].append(
                cascade_curve(
                    scenes[RECIPE], scenes[row], decisions, cascade_ons, float_thresholds(scenes[row]), attempts
                )
            )
            for budget in FALSE_ALARM_BUDGETS:
                point = within_budget(curves[name][-1], budget)
                found = cascade_losses(
                    scenes[RECIPE], scenes[row], layouts, decisions, point, min(cascade_ons), attempts
                )
                losses[name][budget].append(found | {"point": _point(point)})
        folds.append(
            {
                "fold": k,
                "head_c": head.c,
                "head_validation_pr_auc": tried,
                "test_clips": len(split["test"]),
                "head_train_screams": sum(c.is_scream for c in train),
            }
        )
    labels = np.array(clip_labels, dtype=bool)
    seed = settings["seed"]
    recipe_headline = curve_headline(curves[RECIPE], seed=seed)
    report: dict[str, Any] = {
        "crossval": str(source),
        "data": str(data),
        "teacher": getattr(teacher, "identity", ""),
        "settings": {k: settings[k] for k in ("folds", "seed", "scenes", "level_spread_db", "split_by")},
        "head_c": list(head_c),
        "head_kind": head_kind,
        "head_screams": head_screams,
        "head_mixes": head_mixes,
        "head_negative_mixes": head_negative_mixes,
        "head_seed": head_seed,
        "cascade_floor": cascade_floor,
        "patience": list(patience) if patience else None,
        "attempts": attempts,
        "rows": {
            row: {
                "headline": curve_headline(curves[row], seed=seed),
                "paired_with_crossval": paired_headline(curves[row], curves[RECIPE], seed=seed),
                "audited_paired_with_crossval": audited_headline(curves[row], curves[RECIPE], seed=seed),
                "clip_roc_auc": round(metrics.roc_auc(labels, np.array(clip_scores[row])), 4) if row in ROWS else None,
                "curves": curves[row],
            }
            for row in (*ROWS, *CASCADES)
        },
        # The crossval's own fold models on the rebuilt scenes: the same headline as its report
        # when the scenes are the ones it measured (the check that they are).
        "crossval_recipe": {
            "headline": recipe_headline,
            "clip_roc_auc": round(metrics.roc_auc(labels, np.array(recipe_clip_scores)), 4),
            # With other decisions than the fold models' own, their headline is not the report's.
            "reproduces_crossval_headline": None if patience else reproduces(recipe_headline, settings["headline"]),
        },
        # The two second stages on the same candidates: the head's verdict minus Screaming's (what
        # `[verifier] head` against `classes = ["Screaming"]` is chosen by).
        "head_minus_screaming_verified": paired_headline(
            curves[f"{RECIPE} verified by yamnet-head"], curves[f"{RECIPE} verified by yamnet-screaming"], seed=seed
        ),
        # Where each cascade loses the screams it does not find, and where its false alarms fire, at
        # each fold's point within each budget (the points the headline's recall counts).
        "losses": {n: {f"{b:g}": losses_summary(by_budget[b]) for b in by_budget} for n, by_budget in losses.items()},
        "folds": folds,
        "windows_scored": windows.windows_scored,
        "windows_read": windows.windows_read,
        "seconds": round(time.monotonic() - started, 1),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(teacher_row_markdown(report))
    _log(f"teacher row: {out / 'report.md'}")
    return report


def format_value(value: Any, interval: Any = None) -> str:
    if value is None:
        return "not reached"
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{text} ({interval[0]:.4g}..{interval[1]:.4g})" if interval else text


def paired_cells(paired: dict[str, Any]) -> list[str]:
    """A `paired_headline`'s differences at <= 2 and <= 5 false alarms per hour, with intervals."""
    return [
        format_value(
            paired[f"recall_at_{b}_fa_per_hour"]["difference"], paired[f"recall_at_{b}_fa_per_hour"].get("interval_95")
        )
        for b in (2, 5)
    ]


def _audited_lines(report: dict[str, Any]) -> list[str]:
    """The rows over only the screams the teacher audit does not reject (train/crossval.py
    `audited_headline`), each paired with the recipe on them."""
    audited = {row: r.get("audited_paired_with_crossval") for row, r in report["rows"].items()}
    if not all(audited.values()):
        return []
    first = next(iter(audited.values()))
    lines = [
        "",
        f"Over only the {first['model']['screams']} of {first['of']} inserted screams whose teacher audit is at "
        f"least {first['at']:g} (the rest count neither way). The teacher chose these screams, so this cut "
        "flatters its rows and the cascade; the recipe's row is not flattered:",
        "",
        "| row | recall at <= 2 FA/h | recall at <= 5 FA/h | minus the recipe at <= 5 FA/h |",
        "| --- | ---: | ---: | ---: |",
    ]

    def recalls(h: dict[str, Any]) -> str:
        keys = ("recall_at_2_fa_per_hour", "recall_at_5_fa_per_hour")
        return " | ".join(format_value(h[key], h.get(f"{key}_interval_95")) for key in keys)

    lines.append(f"| crossval recipe | {recalls(first['baseline'])} | |")
    for row, p in audited.items():
        d = p["recall_at_5_fa_per_hour"]
        lines.append(f"| {row} | {recalls(p['model'])} | {format_value(d['difference'], d.get('interval_95'))} |")
    return lines


def _losses_lines(report: dict[str, Any]) -> list[str]:
    """Where the cascades lose screams and where their false alarms fire (`cascade_losses`)."""
    losses = report.get("losses")
    if not losses:  # reports written before it
        return []
    shown = ("found", "vetoed", "below_on", "never_raised")

    def cells(counts: dict[str, int]) -> str:
        return " / ".join(str(counts[o]) for o in shown)

    lines = [
        "",
        "## Where the cascades lose screams",
        "",
        "At each fold's point within the budget (the points the recall above counts), what became of each "
        "inserted scream: found; vetoed (the recipe raised a candidate on it and every verdict fell short); "
        "below `on` (no candidate at the point's `on`, one at the lowest `on` the curve tries); never raised "
        "(none even there).",
        "",
        "| cascade | budget (FA/h) | found | vetoed | below `on` | never raised | no point | false alarms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, by_budget in losses.items():
        for budget, summary in by_budget.items():
            o = summary["outcomes"]
            lines.append(
                f"| {name} | <= {budget} | {o['found']} | {o['vetoed']} | {o['below_on']} | {o['never_raised']} "
                f"| {o['no_point']} | {summary['false_alarms']} |"
            )
    for key, title in (("by_teacher_audit", "teacher audit (`teacher_scream`)"), ("by_snr_db", "SNR (dB)")):
        for budget in next(iter(losses.values())):
            names = list(dict.fromkeys(b for by in losses.values() for b in by[budget][key]))
            lines += [
                "",
                f"By {title} at <= {budget} FA/h, screams found / vetoed / below `on` / never raised:",
                "",
                "| cascade | " + " | ".join(names) + " |",
                "| --- |" + " ---: |" * len(names),
            ]
            for name, by_budget in losses.items():
                groups = by_budget[budget][key]
                lines.append(
                    f"| {name} | " + " | ".join(cells(groups[b]) if b in groups else "-" for b in names) + " |"
                )
    lines += ["", "Where the onset to alarm goes, of the screams found:", ""]
    for name, by_budget in losses.items():
        for budget, summary in by_budget.items():
            o = summary.get("onset") or {}
            if o.get("median_onset_s") is None:
                continue
            lines.append(
                f"- {name}, <= {budget} FA/h: median {o['median_onset_s']:.3f} s. The student's window that "
                f"first hit ended a median {o['median_hit_s']:.3f} s after the scream's onset, then "
                f"{o['median_decision_s']:.3f} s to the alarm (patience and verdicts); "
                f"{o['at_first_verdict']:.0%} at the first verdict, {o['within_0_5_s']:.0%} within 0.5 s."
            )
    lines += ["", "Where the false alarms fire (the non-scream under each, by family; the commonest categories):", ""]
    for name, by_budget in losses.items():
        for budget, summary in by_budget.items():
            families = ", ".join(f"{k} {v}" for k, v in summary["false_alarms_by_family"].items()) or "none"
            top = ", ".join(f"{k} {v}" for k, v in list(summary["false_alarms_by_category"].items())[:8]) or "none"
            lines.append(f"- {name}, <= {budget} FA/h ({summary['false_alarms']}): {families}. Categories: {top}.")
    return [*lines, ""]


def teacher_row_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# The teacher on the cross-validation's folds",
        "",
        f"`scream teacher-row --crossval {report['crossval']}`: {s['folds']} folds ({s['split_by']}), "
        f"{s['scenes']} scenes per fold, level spread {s['level_spread_db']:g} dB, seed {s['seed']}; "
        f"teacher {report['teacher']}. Each fold's own test scenes, windows and live decisions; only the "
        "window score is the teacher's. Recall at a budget picks each fold's best `on` on its own scenes "
        "(a curve, not an operating point); intervals resample scream sources.",
        "",
        "| row | recall at <= 2 FA/h | recall at <= 5 FA/h | FA/h at recall 0.8 | clip ROC AUC "
        "| median onset at <= 2 / <= 5 FA/h (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    named = [("crossval recipe", report["crossval_recipe"])] + [(row, report["rows"][row]) for row in report["rows"]]
    for name, row in named:
        h = row["headline"]
        lines.append(
            f"| {name} | {format_value(h['recall_at_2_fa_per_hour'], h.get('recall_at_2_fa_per_hour_interval_95'))} "
            f"| {format_value(h['recall_at_5_fa_per_hour'], h.get('recall_at_5_fa_per_hour_interval_95'))} "
            f"| {format_value(h['fa_per_hour_at_recall_0.8'], h.get('fa_per_hour_at_recall_0.8_interval_95'))} "
            f"| {'-' if row['clip_roc_auc'] is None else format_value(row['clip_roc_auc'])} "
            f"| {format_value(h.get('median_onset_at_2_fa_per_hour_s'))} / "
            f"{format_value(h.get('median_onset_at_5_fa_per_hour_s'))} |"
        )
    lines += ["", "Paired with the crossval recipe (row minus recipe, the same inserted screams):", ""]
    lines += ["| row | recall at <= 2 FA/h | recall at <= 5 FA/h |", "| --- | ---: | ---: |"]
    for row in report["rows"]:
        cells = paired_cells(report["rows"][row]["paired_with_crossval"])
        lines.append(f"| {row} | {cells[0]} | {cells[1]} |")
    if "head_minus_screaming_verified" in report:  # reports written before it lack this pairing
        cells = paired_cells(report["head_minus_screaming_verified"])
        lines += [
            "",
            "The two second stages paired (the recipe's events verified by the head minus verified by Screaming, "
            f"the same inserted screams): {cells[0]} at <= 2 and {cells[1]} at <= 5 false alarms per hour.",
        ]
    lines += _audited_lines(report)
    lines += [
        "",
        "The head's regularisation per fold (validation window PR AUC at each C): "
        + "; ".join(f"fold {f['fold']}: C={f['head_c']:g} {f['head_validation_pr_auc']}" for f in report["folds"]),
        "",
        (
            f"Every row decided with {report['patience'][0]} of {report['patience'][1]} windows instead of each fold "
            "model's own patience, so the recipe's row is not the crossval's headline."
            if report.get("patience")
            else "The crossval's own fold models, scored again on these rebuilt scenes, give "
            + (
                "exactly the headline of its report: the scenes are the ones it measured."
                if report["crossval_recipe"]["reproduces_crossval_headline"]
                else "a headline other than its report's: these scenes are not the ones it measured (other data?)."
            )
        ),
        "",
        *(
            [
                f"The cascades judge a vetoed candidate again each time the patience rule is met anew within it, "
                f"up to {report['attempts']} verdicts (`[verifier] attempts`), and alarm at its first passing one.",
                "",
            ]
            if report.get("attempts", 1) > 1
            else []
        ),
        *(
            [
                f"The cascades try as `on` the recipe's scene window scores from their "
                f"{report['cascade_floor'] * 100:g}th percentile up (`--cascade-floor`; the recipe's own row from "
                f"the {CURVE_FLOOR * 100:g}th).",
                "",
            ]
            if report.get("cascade_floor", CURVE_FLOOR) < CURVE_FLOOR
            else []
        ),
        f"{report['windows_scored']} teacher windows scored ({report.get('windows_read', 0)} more read from the "
        f"cache) in {report['seconds']:.0f} s.",
        "",
    ]
    lines += _losses_lines(report)
    return "\n".join(lines)
