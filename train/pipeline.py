"""`scream train`: validate data, split by group, train the CNN with augmentation, pick
thresholds on validation, export int8 with its sidecar, and evaluate on the test split."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from edge.classifier import Classifier
from edge.errors import AudioError
from edge.features import FeatureParams, LogMelExtractor
from train import metrics
from train.augment import AugmentParams, augment_waveform, change_speed, colored_noise, spec_augment
from train.data import Clip, DataError, Dataset, WaveformCache, load_dataset, regroup
from train.operating_point import on_off_at
from train.splits import fold_splits, split_by_group, write_splits
from train.windows import edge_windows, random_window, window_samples

if TYPE_CHECKING:
    from train.corpus.teacher import Teacher
    from train.distill import TeacherTargets

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    window_frames: int = 96
    hop_frames: int = 25
    epochs: int = 30
    steps_per_epoch: int = 100
    batch_size: int = 64
    width: int = 16
    head: str = "global"  # how the last feature map is pooled: train/model.py HEADS
    members: int = 3  # > 1: train this many networks (seeds seed, seed+1, ...) and ship their average
    learning_rate: float = 2e-3
    early_stopping_patience: int = 8
    hard_negative_weight: float = 3.0
    onset_window_fraction: float = 0.3  # of scream windows: ones that end 0.25-0.6 s after the onset
    noise_only_fraction: float = 0.08  # of negatives: synthesised noise or near-silence
    # Of negatives: a procedural vocal non-scream, alarm or ringtone (train/procedural.py), drawn from
    # a pool of `procedural_pool` made once per run. 0 (off) keeps the recipe's random stream as it was.
    procedural_fraction: float = 0.0
    procedural_pool: int = 600
    # Of negatives: a vowel, hum, laugh, sigh or word said by espeak-ng (train/spoken.py), drawn from
    # a pool of `spoken_pool` said once per run. 0 (off) keeps the random stream as it was.
    spoken_fraction: float = 0.0
    spoken_pool: int = 600
    # > 0: the student also learns the teacher's view of every augmented excerpt (an auxiliary head
    # dropped at export, train/distill.py), with this weight beside the scream loss: its embedding
    # (distill_target "embedding", cosine loss) or its AudioSet class scores ("scores", cross-entropy).
    distill_weight: float = 0.0
    distill_target: str = "embedding"
    teacher_dir: str = "../shared/models/yamnet"  # YAMNet as TF-Lite, for distill_weight > 0
    label_smoothing: float = 0.1
    # > 0: at export, the scream unit's logit (each member's) is divided by what brings the largest
    # logit on the representative windows down to this (never multiplied), so the int8 output, steps
    # of 1/256 up to 0.996 (logit 5.5), resolves the top scores instead of tying them there
    # (train/model.py output_temperature). A single network ranks windows as before. 0 (off): as trained.
    output_logit_max: float = 0.0
    # > 0: screams of the train and validation splits whose teacher audit (the manifest's
    # teacher_scream, YAMNet's peak "Screaming") is below this are left out of training; the test split
    # keeps every clip, so a crossval with it pairs with one without.
    min_teacher_scream: float = 0.0
    # > 0: non-screams whose teacher audit reaches this are mined as hard negatives: drawn at twice
    # hard_negative_weight, whatever their family (negative_weight).
    teacher_hard_negative: float = 0.0
    target_fpr: float = 0.01  # window-level false-positive rate of the first `on` (the fallback)
    off_fpr: float = 0.03
    # The operating point (on, k-of-n patience) is then chosen on validation streams: see
    # train/operating_point.py for the rule these three bounds feed.
    max_false_alarms_per_hour: float = 0.5
    min_event_recall: float = 0.5
    max_latency_s: float = 1.0
    seed: int = 0
    split_by: str = "group"  # the unit splits deal whole: "group" or "source" (train/data.py regroup)
    split_seed: int | None = None  # the train/validation/test split's seed; None: `seed`
    folds: int = 0  # > 0: cross-validation (`scream crossval`): test on group fold `fold` of `folds`,
    fold: int = 0  # validate on the next fold, train on the rest (train/splits.py fold_splits)
    cache_dir: str = ""
    verbose: int = 2

    @property
    def effective_split_seed(self) -> int:
        """The seed that deals the splits (or the folds): `split_seed`, else `seed`."""
        return self.seed if self.split_seed is None else self.split_seed


@dataclass
class PreparedSplit:
    clips: list[Clip]
    waves: list[FloatArray]


@dataclass
class EvalWindows:
    windows: FloatArray
    labels: npt.NDArray[np.bool_]


@dataclass
class TrainResult:
    model_path: Path
    sidecar: dict[str, Any]
    seconds: float
    histories: list[dict[str, list[float]]] = field(default_factory=list)  # one per member


def _log(message: str) -> None:
    print(message, flush=True)


def audited_splits(splits: dict[str, list[Clip]], min_teacher_scream: float) -> tuple[dict[str, list[Clip]], int]:
    """The splits without the train and validation screams whose teacher audit is below
    `min_teacher_scream` (clips the audit never scored stay); the test split untouched."""

    def kept(clip: Clip) -> bool:
        return not (clip.is_scream and clip.teacher_scream is not None and clip.teacher_scream < min_teacher_scream)

    out = {name: clips if name == "test" else [c for c in clips if kept(c)] for name, clips in splits.items()}
    return out, sum(len(splits[n]) - len(out[n]) for n in splits)


def prepare(clips: list[Clip], cache: WaveformCache, skipped: list[tuple[str, str]]) -> PreparedSplit:
    kept, waves = [], []
    for clip in clips:
        try:
            waves.append(cache.load(clip.path))
            kept.append(clip)
        except (AudioError, ImportError) as exc:
            skipped.append((str(clip.path), str(exc)))
    return PreparedSplit(kept, waves)


def eval_windows(split: PreparedSplit, features: FeatureParams, config: TrainConfig) -> EvalWindows:
    """Every window `detect` would score; scream clips keep only windows over their loud part."""
    parts, labels = [], []
    for clip, wave in zip(split.clips, split.waves, strict=True):
        cw = edge_windows(wave, features, window_frames=config.window_frames, hop_frames=config.hop_frames)
        keep = cw.is_active if clip.is_scream else np.ones(len(cw.windows), dtype=bool)
        parts.append(cw.windows[keep])
        labels += [clip.is_scream] * int(keep.sum())
    return EvalWindows(np.concatenate(parts), np.array(labels))


def procedural_pool(rate: int, config: TrainConfig) -> list[FloatArray]:
    """`config.procedural_pool` procedural negatives, every family in turn, seeded by the run's seed."""
    from train.procedural import FAMILIES, sound

    names = list(FAMILIES)
    return [
        sound(names[i % len(names)], rate, np.random.default_rng([config.seed, 7919, i]))
        for i in range(config.procedural_pool)
    ]


def spoken_pool(rate: int, config: TrainConfig) -> list[FloatArray]:
    """`config.spoken_pool` spoken negatives (train/spoken.py), seeded by the run's seed."""
    from train.spoken import pool

    return pool(config.spoken_pool, rate, config.seed)


def negative_weight(clip: Clip, config: TrainConfig) -> float:
    """How often a non-scream is drawn, against 1 for an ordinary one: `hard_negative_weight` for the
    confusable families (alarms, vocal sounds, cries, animals, ...), and with `teacher_hard_negative`
    > 0 twice that for the clips the teacher itself hears as screaming (teacher_scream at or above it)."""
    teacher = clip.teacher_scream
    if config.teacher_hard_negative > 0 and teacher is not None and teacher >= config.teacher_hard_negative:
        return 2 * config.hard_negative_weight
    return config.hard_negative_weight if clip.family != "other" else 1.0


class AugmentedBatches:
    """Balanced, freshly augmented batches; batch (epoch, i) is the same whatever the threading."""

    def __init__(
        self,
        split: PreparedSplit,
        features: FeatureParams,
        config: TrainConfig,
        augment: AugmentParams,
        *,
        teacher: TeacherTargets | None = None,
    ) -> None:
        self.features, self.config, self.augment = features, config, augment
        self.teacher = teacher
        self.extractor = LogMelExtractor(features)
        self.length = window_samples(features, config.window_frames)
        self.screams = [w for c, w in zip(split.clips, split.waves, strict=True) if c.is_scream]
        negatives = [(c, w) for c, w in zip(split.clips, split.waves, strict=True) if not c.is_scream]
        self.negatives = [w for _, w in negatives]
        weights = np.array([negative_weight(c, config) for c, _ in negatives])
        self.negative_p = weights / weights.sum()
        self.backgrounds = self.negatives
        self.procedural = procedural_pool(features.sample_rate_hz, config) if config.procedural_fraction else []
        self.spoken = spoken_pool(features.sample_rate_hz, config) if config.spoken_fraction else []
        self.epoch = 0

    def _speed(self, rng: np.random.Generator) -> float:
        """A playback speed for a recorded clip; draws nothing while speed changes are off, so runs
        without them keep their random stream."""
        p = self.augment.speed_probability
        return float(rng.uniform(*self.augment.speed_range)) if p and rng.random() < p else 1.0

    def batch(self, index: int) -> tuple[FloatArray, FloatArray]:
        windows, labels, _ = self._batch(index)
        return windows, labels

    def batch_with_teacher(self, index: int) -> tuple[FloatArray, dict[str, FloatArray]]:
        """The same batch, with the teacher's embedding or class scores of each augmented excerpt as a
        second target."""
        assert self.teacher is not None
        windows, labels, excerpts = self._batch(index)
        return windows, {"scream": labels, "teacher": self.teacher.embed(excerpts)}

    def _batch(self, index: int) -> tuple[FloatArray, FloatArray, list[FloatArray]]:
        rng = np.random.default_rng([self.config.seed, self.epoch, index])
        half = self.config.batch_size // 2
        rate = self.features.sample_rate_hz
        excerpts, labels = [], []
        for k in range(self.config.batch_size):
            is_scream = k < half
            speed = 1.0
            if is_scream:
                source = self.screams[rng.integers(len(self.screams))]
                speed = self._speed(rng)
            elif rng.random() < self.config.noise_only_fraction:
                color = str(rng.choice(["white", "pink", "brown", "hum"]))
                source = colored_noise(self.length, color, rate, rng) * np.float32(10 ** rng.uniform(-4, -1))
            elif self.procedural and rng.random() < self.config.procedural_fraction:
                source = self.procedural[rng.integers(len(self.procedural))]
                speed = self._speed(rng)
            elif self.spoken and rng.random() < self.config.spoken_fraction:
                source = self.spoken[rng.integers(len(self.spoken))]
                speed = self._speed(rng)
            else:
                source = self.negatives[rng.choice(len(self.negatives), p=self.negative_p)]
                speed = self._speed(rng)
            excerpt = random_window(
                source,
                is_scream=is_scream,
                length=round(self.length * speed),
                features=self.features,
                rng=rng,
                onset_probability=self.config.onset_window_fraction,
            )
            excerpt = change_speed(excerpt, self.length)
            excerpts.append(augment_waveform(excerpt, rate, rng, self.augment, self.backgrounds))
            labels.append(float(is_scream))
        windows = np.stack([spec_augment(self.extractor.compute(x), rng, self.augment) for x in excerpts])
        return windows[..., None], np.array(labels, dtype=np.float32)[:, None], excerpts


def keras_batches(item: Callable[[int], Any], steps: int, on_epoch_end: Callable[[], None]) -> Any:
    """`steps` batches a epoch for Keras' fit: batch `index` is `item(index)`, one worker thread."""
    import keras

    class Sequence(keras.utils.PyDataset):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(workers=1, use_multiprocessing=False)

        def __len__(self) -> int:
            return steps

        def __getitem__(self, index: int) -> Any:
            return item(index)

        def on_epoch_end(self) -> None:
            on_epoch_end()

    return Sequence()


def _keras_sequence(batches: AugmentedBatches, steps: int) -> Any:
    def next_epoch() -> None:
        batches.epoch += 1

    item = batches.batch_with_teacher if batches.teacher is not None else batches.batch
    return keras_batches(item, steps, next_epoch)


def choose_thresholds(labels: npt.ArrayLike, scores: npt.ArrayLike, config: TrainConfig) -> dict[str, Any]:
    on, off = on_off_at(labels, scores, config.target_fpr, config.off_fpr)
    return {
        "on": on,
        "off": off,
        "chosen_by": (
            f"validation windows: 'on' keeps the false-positive rate at or below {config.target_fpr:.1%}, "
            f"'off' at {config.off_fpr:.1%}"
        ),
    }


def data_summary(dataset: Dataset, splits: dict[str, list[Clip]]) -> dict[str, Any]:
    sources: dict[str, dict[str, Any]] = {}
    for clip in dataset.clips:
        key = clip.source or "unknown"
        entry = sources.setdefault(key, {"licence": clip.licence, "scream": 0, "non_scream": 0})
        entry[clip.label] += 1
    return {
        "root": dataset.root.name,
        "clips": {label: len(dataset.by_label(label)) for label in ("scream", "non_scream")},
        "minutes": {
            label: round(sum(c.duration_s for c in dataset.by_label(label)) / 60, 2)
            for label in ("scream", "non_scream")
        },
        "splits": {
            name: {
                "clips": len(members),
                "screams": sum(c.is_scream for c in members),
                "groups": len({c.group for c in members}),
            }
            for name, members in splits.items()
        },
        "skipped": len(dataset.skipped),
        "sources": sources,
    }


def train(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    config: TrainConfig | None = None,
    features: FeatureParams | None = None,
    augment: AugmentParams | None = None,
    teacher: Teacher | None = None,
) -> TrainResult:
    """Train and export `<out>.tflite` + `<out>.json`; the run's files go to `<out>-run/`.
    With `config.distill_weight` > 0 the teacher is `teacher`, else YAMNet from `config.teacher_dir`."""
    from train.export import export_model
    from train.model import build_ensemble

    config = config or TrainConfig()
    features = features or FeatureParams()
    augment = augment or AugmentParams()
    started = time.monotonic()
    out_path = Path(out).with_suffix(".tflite")
    run_dir = out_path.parent / f"{out_path.stem}-run"
    run_dir.mkdir(parents=True, exist_ok=True)

    dataset = regroup(load_dataset(data), config.split_by)
    for line in dataset.summary_lines():
        _log(line)
    if config.folds:
        splits = fold_splits(
            dataset.clips,
            config.folds,
            config.fold,
            seed=config.effective_split_seed,
            balance_screams=config.split_by == "source",
        )
    else:
        splits = split_by_group(dataset.clips, seed=config.effective_split_seed)
    if config.min_teacher_scream > 0:
        splits, dropped = audited_splits(splits, config.min_teacher_scream)
        _log(f"left out of train/validation: {dropped} screams the teacher scores below {config.min_teacher_scream:g}")
    write_splits(splits, run_dir / "splits.tsv", dataset.base)
    leaks = set.intersection(*({c.group for c in splits[s]} for s in ("train", "test"))) | set.intersection(
        *({c.group for c in splits[s]} for s in ("train", "validation"))
    )
    if leaks:
        raise DataError(f"group leakage between splits: {sorted(leaks)[:5]}")

    cache = WaveformCache.at(config.cache_dir, features.sample_rate_hz)
    _log(f"decoding and caching {len(dataset.clips)} clips at {features.sample_rate_hz} Hz in {cache.directory}")
    prepared = {name: prepare(members, cache, dataset.skipped) for name, members in splits.items()}
    val = eval_windows(prepared["validation"], features, config)
    test = eval_windows(prepared["test"], features, config)
    _log(
        f"validation windows: {val.labels.sum()} scream / {(~val.labels).sum()} non-scream; "
        f"test windows: {test.labels.sum()} / {(~test.labels).sum()}"
    )

    targets = None
    if config.distill_weight > 0:
        from train.distill import TeacherTargets, load_teacher

        targets = TeacherTargets(
            teacher or load_teacher(config.teacher_dir), features, config.window_frames, target=config.distill_target
        )
        _log(f"distilling {targets.identity} ({targets.describe()}) with weight {config.distill_weight}")
    names = [f"member_{k}" for k in range(config.members)] if config.members > 1 else ["scream_cnn"]
    fits = [
        _fit_member(
            replace(config, seed=config.seed + k), prepared["train"], val, features, augment, name=name, teacher=targets
        )
        for k, name in enumerate(names)
    ]
    batches = fits[0].batches
    model = fits[0].model if config.members == 1 else build_ensemble([f.model for f in fits])
    rng = np.random.default_rng(config.seed)
    representative = np.concatenate([batches.batch(1000 + i)[0][..., 0] for i in range(6)])
    representative = np.concatenate(
        [representative, val.windows[rng.choice(len(val.windows), min(200, len(val.windows)), replace=False)]]
    )
    temperature = 1.0
    if config.output_logit_max > 0:
        from train.model import output_temperature, soften_output

        temperature = output_temperature(
            model.predict(representative[..., None], batch_size=256, verbose=0), config.output_logit_max
        )
        units = soften_output(model, temperature)
        _log(
            f"scream logit divided by {temperature:.3f} in {units} unit(s): the largest on representative "
            f"windows is now about {config.output_logit_max:g}"
        )
    val_scores = model.predict(val.windows[..., None], batch_size=256, verbose=0).reshape(-1)
    thresholds = choose_thresholds(val.labels, val_scores, config)
    _log(f"thresholds from validation: on {thresholds['on']}, off {thresholds['off']}")

    float_test = model.predict(test.windows[..., None], batch_size=256, verbose=0).reshape(-1)
    metadata = {
        "training": {
            "config": asdict(config),
            "augment": asdict(augment),
            "data": data_summary(dataset, splits),
            "epochs_run": [len(f.history.get("loss", [])) for f in fits]
            if config.members > 1
            else len(fits[0].history.get("loss", [])),
            "seconds": round(time.monotonic() - started, 1),
            # What the exported scream logit was divided by (config.output_logit_max; 1.0: as trained).
            "output_temperature": round(temperature, 4),
        },
    }
    sidecar = export_model(
        model,
        out_path,
        features=features,
        window_frames=config.window_frames,
        hop_frames=config.hop_frames,
        representative=representative,
        check_windows=test.windows,
        thresholds=thresholds,
        metadata=metadata,
        operating_point=lambda int8: _operating_point(int8, prepared["validation"], val, config),
        final_metrics=lambda final: {"test_float_windows": window_metrics(test.labels, float_test, final["on"])},
    )
    from train.export import convert_float

    (run_dir / "model-float.tflite").write_bytes(convert_float(model))
    history: dict[str, Any] = fits[0].history if config.members == 1 else {"members": [f.history for f in fits]}
    (run_dir / "history.json").write_text(json.dumps(history, indent=1))
    seconds = time.monotonic() - started
    _log(
        f"exported {out_path} ({sidecar['size_bytes']} bytes) in {seconds:.0f} s; "
        f"int8/float decision agreement {sidecar['int8_check']['decision_agreement']:.2%}"
    )
    return TrainResult(out_path, sidecar, seconds, [f.history for f in fits])


@dataclass
class FittedMember:
    model: Any
    batches: AugmentedBatches
    history: dict[str, list[float]]


def _fit_member(
    config: TrainConfig,
    train_split: PreparedSplit,
    val: EvalWindows,
    features: FeatureParams,
    augment: AugmentParams,
    *,
    name: str,
    teacher: TeacherTargets | None = None,
) -> FittedMember:
    """One network, seeded by `config.seed` (its weights and its stream of augmented batches)."""
    import keras

    from train.model import build_model

    if config.members > 1:
        _log(f"training ensemble member with seed {config.seed}")
    batches = AugmentedBatches(train_split, features, config, augment, teacher=teacher)
    stats_sample = np.concatenate([batches.batch(i)[0] for i in range(4)])
    batches.epoch = 0
    model = build_model(
        window_frames=config.window_frames,
        mel_bands=features.mel_bands,
        feature_mean=float(stats_sample.mean()),
        feature_std=float(stats_sample.std() + 1e-6),
        width=config.width,
        seed=config.seed,
        head=config.head,
        name=name,
        distill_dim=teacher.dim if teacher is not None else 0,
        distill_target=teacher.target if teacher is not None else "embedding",
    )
    if teacher is not None:
        from train.distill import fit_distilled

        return FittedMember(*fit_distilled(model, batches, val, config))
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.BinaryCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.AUC(curve="PR", name="pr_auc"), keras.metrics.AUC(name="roc_auc")],
    )
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_pr_auc", mode="max", patience=config.early_stopping_patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(monitor="val_pr_auc", mode="max", factor=0.5, patience=3),
    ]
    history = model.fit(
        _keras_sequence(batches, config.steps_per_epoch),
        validation_data=(val.windows[..., None], val.labels.astype(np.float32)),
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=config.verbose,
    )
    return FittedMember(model, batches, {k: [float(v) for v in vals] for k, vals in history.history.items()})


def _operating_point(
    int8: Classifier, validation: PreparedSplit, val: EvalWindows, config: TrainConfig
) -> dict[str, Any]:
    from train.operating_point import OperatingPointRule, choose_operating_point

    started = time.monotonic()
    val_scores = np.array([int8.score(w) for w in val.windows])
    rule = OperatingPointRule(
        max_false_alarms_per_hour=config.max_false_alarms_per_hour,
        min_event_recall=config.min_event_recall,
        max_latency_s=config.max_latency_s,
        default_fpr=config.target_fpr,
        off_ratio_fpr=config.off_fpr,
    )
    point = choose_operating_point(
        int8, validation.clips, validation.waves, val.labels, val_scores, rule=rule, seed=config.seed
    )
    v = point["validation"]
    _log(
        f"operating point from validation ({time.monotonic() - started:.0f} s): on {point['on']}, off {point['off']}, "
        f"{point['patience_windows']} of {point['patience_of']} windows; scene recall {v['event_recall']}, "
        f"{v['false_alarms_per_hour']} false alarms/h, onset to alarm {v['median_onset_to_alarm_s']} s"
    )
    return point


def window_metrics(labels: npt.ArrayLike, scores: npt.ArrayLike, threshold: float) -> dict[str, Any]:
    c = metrics.confusion(labels, scores, threshold)
    return {
        "roc_auc": round(metrics.roc_auc(labels, scores), 4),
        "pr_auc": round(metrics.average_precision(labels, scores), 4),
        "recall_at_1pct_fpr": round(metrics.recall_at_fpr(labels, scores, 0.01), 4),
        "recall_at_5pct_fpr": round(metrics.recall_at_fpr(labels, scores, 0.05), 4),
        "f1": round(c.f1, 4),
        "confusion": asdict(c),
    }
