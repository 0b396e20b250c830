"""`scream adapt`: fine-tune a shipped model on one site's labelled clips without forgetting screams.

The site's clips (`scream deploy pull` writes them as a corpus manifest) are split per clip, by
label and seeded, into a part to learn from, a part for the operating point and a part for the
before/after report that neither training nor the operating point saw. The base model is rebuilt
as a trainable network from its float file (train/rebuild.py, checked to compute the same scores)
and fine-tuned on augmented batches whose negatives are the site's non-screams for a set share and
a replay sample of the base model's own training clips for the rest; the screams come from the
replay sample and any site screams. By default only the dense head learns (train "head"), on the
convolutions' features as the base model has them; train "all" lets every layer learn.

The operating point is by default held to the base model's trade (operating_point "held",
`held_operating_point`): the base model's patience, and the `on` with the most scene recall at no
more false alarms than the base model raises in the same corpus validation scenes, so the guards
below compare recall at the base model's alarm rate. "rechoose" chooses it again as training does
(train/operating_point.py) on the site's validation part together with the base model's validation
clips, for the most recall within the base model's own false-alarm rate there; "matched" puts `on`
and `off` where the adapted model has the base model's window false-positive rates on the corpus
validation non-screams (`matched_operating_point`). The model is exported int8 with a
sidecar naming the base model and the site data.

Before it is published the adapted model is scored beside the base model on the same scenes of the
base model's held-out test clips (corpus scene recall) and on the site's report part (false alarms
per hour of site audio, site screams found). If its corpus recall falls more than `max_recall_drop`
below the base model's, or its corpus false alarms per hour rise more than `max_false_alarm_rise`
(relative, plus one alarm's worth: the scenes are finite), nothing is published and the error says
by how much; the report is written either way.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge.classifier import Classifier, sha256_file
from edge.errors import ScreamError
from edge.features import FeatureParams
from edge.pipeline import detection_settings
from train.augment import AugmentParams
from train.data import Clip, DataError, WaveformCache, _read_manifest, load_dataset
from train.pipeline import (
    AugmentedBatches,
    PreparedSplit,
    TrainConfig,
    _keras_sequence,
    _log,
    _operating_point,
    choose_thresholds,
    eval_windows,
    keras_batches,
    negative_weight,
    prepare,
)


class AdaptRefused(ScreamError, RuntimeError):
    """The adapted model would lose too much of the base model's scream recall; nothing was published."""


OPERATING_POINTS = ("held", "rechoose", "matched")


@dataclass(frozen=True)
class AdaptConfig:
    epochs: int = 10
    steps_per_epoch: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3
    site_share: float = 0.4  # of the negative excerpts: drawn from the site's non-screams
    replay_clips: int = 1200  # of the base model's training clips, replayed (all its screams up to half)
    site_validation_fraction: float = 0.2
    site_test_fraction: float = 0.3
    max_recall_drop: float = 0.05  # corpus scene recall the adapted model may lose, absolute
    max_false_alarm_rise: float | None = (
        0.25  # corpus scene false alarms/h it may add, relative (plus one alarm); None: no guard
    )
    scenes: int = 4  # as scream evaluate: 2 scenes (74 of v5's test screams) left the guard within noise
    # "head": only the dense layers learn, on the convolutions' features as the base model has them;
    # "all": every layer learns.
    train: str = "head"
    # "labels": the replay clips are learnt from their labels; "base": from the base model's own scores
    # (learning without forgetting), and half of every batch is the site's clips with their labels.
    keep: str = "labels"
    # "rechoose": chosen again as training chooses it, on the site's and the corpus's validation scenes;
    # "held": the base model's patience, and the `on` with the most recall at no more false alarms than
    # the base model's on the same corpus validation scenes (held_operating_point);
    # "matched": the base model's patience, with `on` and `off` where the adapted model has the base
    # model's window false-positive rates on the corpus validation non-screams (matched_operating_point).
    operating_point: str = "held"
    seed: int = 0
    cache_dir: str = ""
    verbose: int = 2


@dataclass
class SiteSplit:
    train: list[Clip]
    validation: list[Clip]
    test: list[Clip]


def split_site(clips: list[Clip], config: AdaptConfig) -> SiteSplit:
    """Per label, seeded: test and validation shares first (at least one clip each where a label has
    three or more), the rest to learn from."""
    rng = np.random.default_rng(config.seed)
    out = SiteSplit([], [], [])
    for label in ("non_scream", "scream"):
        members = sorted((c for c in clips if c.label == label), key=lambda c: str(c.path))
        order = rng.permutation(len(members))
        n_test = max(1, round(len(members) * config.site_test_fraction)) if len(members) >= 3 else 0
        n_val = max(1, round(len(members) * config.site_validation_fraction)) if len(members) >= 3 else 0
        picked = [members[i] for i in order]
        out.test += picked[:n_test]
        out.validation += picked[n_test : n_test + n_val]
        out.train += picked[n_test + n_val :]
    return out


def _passing(sorted_scores: np.ndarray, rate: float) -> float:
    """The lowest threshold (to 4 decimals) that lets through at most `rate` of `sorted_scores`."""
    above = int(np.floor(rate * sorted_scores.size))
    if above > 0:  # rounded down, so the window at the threshold still reaches it
        value = math.floor(float(sorted_scores[sorted_scores.size - above]) * 1e4) / 1e4
    else:  # above every window
        value = math.floor(float(sorted_scores[-1]) * 1e4 + 1) / 1e4
    return min(max(value, 1e-4), 0.9999)


def _at_base_rates(base: Classifier, adapted: Classifier, negatives: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The adapted model's scores of `negatives`, sorted, and the shares of `negatives` the base
    model's own `on` and `off` let through (its window false-positive rates there)."""
    own = base.sidecar.operating_point
    base_scores = np.array([base.score(w) for w in negatives])
    scores = np.sort(np.array([adapted.score(w) for w in negatives]))
    return scores, float(np.mean(base_scores >= own.on_threshold)), float(np.mean(base_scores >= own.off_threshold))


def matched_operating_point(base: Classifier, adapted: Classifier, negatives: np.ndarray) -> dict[str, Any]:
    """The base model's decision rule carried over to the adapted model: its patience and smoothing,
    and `on` and `off` at the window false-positive rates the base model's own `on` and `off` have on
    `negatives` (the corpus validation split's non-scream windows, thousands of them: steadier than
    a choice on a few validation scenes). So the adapted model alarms as often as the base model on the
    audio the base model was tuned on, and as late; what it learnt at the site is not matched away."""
    own = base.sidecar.operating_point
    scores, on_rate, off_rate = _at_base_rates(base, adapted, negatives)
    on, off = _passing(scores, on_rate), _passing(scores, off_rate)
    return {
        "on": on,
        "off": min(off, on),
        "patience_windows": own.patience_windows,
        "patience_of": own.patience_of,
        "smoothing_windows": own.smoothing_windows,
        "chosen_by": (
            f"matched to the base model {base.model_path.name}: its patience ({own.describe()}), 'on' and 'off' "
            f"at its window false-positive rates ({on_rate:.2%} and {off_rate:.2%}) on {len(negatives)} corpus "
            "validation non-scream windows"
        ),
    }


# What a held operating point records of a candidate's scenes.
ROW_KEYS = ("event_recall", "false_alarms_per_hour", "median_onset_to_alarm_s")
# Candidate `on`s of the held operating point: the base model's window false-positive rate on the
# corpus validation non-screams times these factors (1/8 to 4, 21 steps), on the adapted model's scores.
HELD_RATE_FACTORS = tuple(float(f) for f in 2.0 ** np.linspace(-3, 2, 21))


def held_operating_point(
    base: Classifier,
    adapted: Classifier,
    clips: list[Clip],
    waves: list[np.ndarray],
    negatives: np.ndarray,
    *,
    scenes: int,
    seed: int,
) -> dict[str, Any]:
    """The base model's trade held: both models score the same `scenes` scenes of the corpus
    validation split (its non-screams back to back, its screams inserted, as training chooses its
    operating point) and the base model is decided at its own operating point there. The adapted model
    keeps the base model's patience and smoothing, `off` at the base model's window false-positive
    rate for `off` on `negatives` (as matched_operating_point), and takes the `on` (among thresholds
    at multiples of the base `on`'s window rate) with the most scene recall at no more false alarms
    than the base model raised in the same scenes; fewer alarms, then less latency, break ties. If
    no candidate is that quiet, the quietest. So the guards compare recall at the base model's alarm
    rate on audio both were tuned on, whatever the fine-tuning did to the scores' scale."""
    from train.scenes import decide, pooled_scene_metrics, score_stream, stream_and_scene

    own = base.sidecar.operating_point
    scores, on_rate, off_rate = _at_base_rates(base, adapted, negatives)
    off = _passing(scores, off_rate)
    scored: tuple[list[Any], list[Any]] = ([], [])  # per model: (stream scores, inserted screams) per scene
    for k in range(scenes):
        _, scene, truth, _ = stream_and_scene(clips, waves, base.sidecar.features, seed + k)
        for model, runs in zip((base, adapted), scored, strict=True):
            runs.append((score_stream(model, scene), truth))

    def outcome(which: int, params: Any) -> dict[str, Any]:
        return pooled_scene_metrics([(*decide(s, params)[:2], truth, s.seconds) for s, truth in scored[which]])

    held = outcome(0, own)
    candidates = []
    for on in sorted({_passing(scores, on_rate * factor) for factor in HELD_RATE_FACTORS}):
        m = outcome(1, replace(own, on_threshold=on, off_threshold=min(off, on)))
        candidates.append({"on": on, "off": min(off, on), **{k: m[k] for k in ROW_KEYS}})

    best, clause = hold(candidates, held["false_alarms_per_hour"])
    hours = sum(s.seconds for s, _ in scored[0]) / 3600
    return {
        "on": best["on"],
        "off": best["off"],
        "patience_windows": own.patience_windows,
        "patience_of": own.patience_of,
        "smoothing_windows": own.smoothing_windows,
        "chosen_by": (
            f"held to the base model {base.model_path.name}'s trade on {scenes} corpus validation scenes "
            f"({hours * 60:.1f} min in all, {held['screams']} screams inserted): there it finds "
            f"{held['event_recall']:.1%} at {held['false_alarms_per_hour']:.1f} false alarms/h with {own.describe()}; "
            f"same patience, {clause}: {best['event_recall']:.1%} at {best['false_alarms_per_hour']:.1f} false alarms/h"
        ),
        "validation": {k: best[k] for k in ROW_KEYS},
        "base_validation": {k: held[k] for k in ROW_KEYS},
        "candidates": candidates,
    }


def hold(candidates: list[dict[str, Any]], false_alarms_per_hour: float) -> tuple[dict[str, Any], str]:
    """The candidate with the most scene recall at no more than `false_alarms_per_hour` (then fewer
    false alarms, then less latency); if none is that quiet, the quietest (then more recall, less
    latency). Returns it and which clause chose it."""

    def latency(c: dict[str, Any]) -> float:
        return c["median_onset_to_alarm_s"] if c["median_onset_to_alarm_s"] is not None else 1e9

    quiet = [c for c in candidates if c["false_alarms_per_hour"] <= false_alarms_per_hour]
    if quiet:
        best = max(quiet, key=lambda c: (c["event_recall"], -c["false_alarms_per_hour"], -latency(c)))
        return best, "the most scene recall at no more false alarms than the base model's"
    best = min(candidates, key=lambda c: (c["false_alarms_per_hour"], -c["event_recall"], latency(c)))
    return best, "no candidate was as quiet as the base model; the fewest false alarms"


def _base_files(model: Path) -> tuple[Path, Path]:
    run = model.parent / f"{model.stem}-run"
    float_path, splits = run / "model-float.tflite", run / "splits.tsv"
    for path, what in ((float_path, "its float model"), (splits, "its train/validation/test splits")):
        if not path.exists():
            raise DataError(f"{model} cannot be adapted: {path} ({what}, written by 'scream train') is missing")
    return float_path, splits


def _corpus_splits(corpus: Path, splits_file: Path) -> dict[str, list[Clip]]:
    import csv

    dataset = load_dataset(corpus)
    by_path = {c.path.resolve(): c for c in dataset.clips}
    out: dict[str, list[Clip]] = {"train": [], "validation": [], "test": []}
    missing = 0
    with splits_file.open(newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            clip = by_path.get((dataset.base / row["path"]).resolve())
            if clip is None:
                missing += 1
            elif row["split"] in out:
                out[row["split"]].append(clip)
    if not out["train"] or not out["test"]:
        raise DataError(
            f"{corpus} does not hold the clips the base model was trained and tested on "
            f"({missing} of the rows of {splits_file} are not in it): pass the corpus it was trained on"
        )
    return out


def _replay(clips: list[Clip], count: int, rng: np.random.Generator) -> list[Clip]:
    screams = [c for c in clips if c.is_scream]
    others = [c for c in clips if not c.is_scream]
    n_screams = min(len(screams), count // 2)

    def pick(pool: list[Clip], n: int) -> list[Clip]:
        return [pool[i] for i in sorted(rng.choice(len(pool), min(n, len(pool)), replace=False))]

    return pick(screams, n_screams) + pick(others, count - n_screams)


def _keep_base_sequence(site: AugmentedBatches, replay: AugmentedBatches, base: Any, steps: int) -> Any:
    """Batches of half site excerpts with their labels and half replay excerpts with the base
    model's scores as targets, so the corpus keeps the scores it had while the site's clips move."""

    def item(index: int) -> tuple[Any, Any]:
        x_site, y_site = site.batch(index)
        x_replay, _ = replay.batch(index)
        y_replay = base.predict(x_replay, batch_size=len(x_replay), verbose=0).reshape(-1, 1)
        return np.concatenate([x_site, x_replay]), np.concatenate([y_site, y_replay.astype(np.float32)])

    def next_epoch() -> None:
        site.epoch += 1
        replay.epoch += 1

    return keras_batches(item, steps, next_epoch)


def set_trainable(network: Any, which: str) -> None:
    """ "all": every layer learns; "head": only the dense layers, on the base model's features."""
    import keras

    if which not in ("all", "head"):
        raise DataError(f"train must be 'all' or 'head', got {which!r}")
    for layer in network.layers:
        layer.trainable = which == "all" or isinstance(layer, keras.layers.Dense)


def site_outcome(classifier: Classifier, clips: list[Clip], waves: list[Any]) -> dict[str, Any]:
    """Each site clip replayed alone through the live decisions: false alarms per hour of the
    non-scream audio, and the share of scream clips that raised an event."""
    from train.scenes import decide, score_stream

    decisions, _ = detection_settings(classifier.sidecar)
    alarms, seconds, found, screams, firing = 0, 0.0, 0, 0, []
    for clip, wave in zip(clips, waves, strict=True):
        starts, _, length = decide(score_stream(classifier, wave), decisions)
        if clip.is_scream:
            screams += 1
            found += bool(starts)
        else:
            alarms += len(starts)
            seconds += length
            if starts:
                firing.append(clip.path.name)
    return {
        "non_scream_clips": len(clips) - screams,
        "non_scream_hours": round(seconds / 3600, 4),
        "false_alarms": alarms,
        "false_alarms_per_hour": round(alarms / (seconds / 3600), 1) if seconds else None,
        "non_scream_clips_firing": len(firing),
        "scream_clips": screams,
        "scream_clips_found": found,
        "firing": firing,
    }


def _corpus_outcome(model: Path, corpus: Path, splits_file: Path, out: Path, config: AdaptConfig) -> dict[str, Any]:
    from train.evaluate import evaluate_with_scores

    report = evaluate_with_scores(
        model,
        corpus,
        out_dir=out,
        splits_file=splits_file,
        split="test",
        cache_dir=config.cache_dir,
        seed=config.seed,
        scenes=config.scenes,
        make_plots=False,
    ).report
    scene = report["scene"]
    return {
        "hours": scene["hours"],
        "screams": scene["screams"],
        "event_recall": scene["event_recall"],
        "false_alarms_per_hour": scene["false_alarms_per_hour"],
        "median_onset_to_alarm_s": scene["median_onset_to_alarm_s"],
        "clip_roc_auc": report["clips"].get("roc_auc") if isinstance(report.get("clips"), dict) else None,
    }


def adapt(
    model: str | Path,
    site: str | Path,
    corpus: str | Path,
    out: str | Path,
    *,
    config: AdaptConfig | None = None,
) -> dict[str, Any]:
    """Fine-tune `model` on the site data at `site`, export `<out>.tflite` + sidecar if it keeps the
    corpus recall; returns the report (also written to `<out>-report/adapt.json` and `adapt.md`)."""
    import keras

    from train.export import convert_float, export_model
    from train.rebuild import check_rebuild, rebuild

    config = config or AdaptConfig()
    started = time.monotonic()
    model, site, corpus = Path(model), Path(site), Path(corpus)
    out_path = Path(out).with_suffix(".tflite")
    report_dir = out_path.parent / f"{out_path.stem}-report"
    float_path, base_splits = _base_files(model)
    base = Classifier(model, expected_features=FeatureParams())
    side = base.sidecar
    features = side.features
    base_sidecar = json.loads(Path(model).with_suffix(".json").read_text())
    trained = base_sidecar.get("training", {}).get("config", {})
    # The operating point is chosen for the most recall within the base model's own false-alarm rate
    # on its validation scenes, so base and adapted are compared at the same price in false alarms.
    base_rate = (base_sidecar.get("thresholds", {}).get("validation") or {}).get("false_alarms_per_hour")
    known = set(TrainConfig.__dataclass_fields__)
    recipe = replace(
        TrainConfig(**{k: v for k, v in trained.items() if k in known}),
        window_frames=side.window_frames,
        hop_frames=side.hop_frames,
        batch_size=config.batch_size,
        steps_per_epoch=config.steps_per_epoch,
        seed=config.seed,
        procedural_fraction=0.0,
        spoken_fraction=0.0,
        distill_weight=0.0,
        output_logit_max=0.0,  # not applied to the fine-tuned network (it has no named scream unit)
        verbose=config.verbose,
    )
    if isinstance(base_rate, int | float) and base_rate > 0:
        recipe = replace(recipe, max_false_alarms_per_hour=max(float(base_rate), recipe.max_false_alarms_per_hour))

    manifest = site / "manifest.tsv" if site.is_dir() else site
    site_clips, skipped = _read_manifest(manifest)
    if sum(not c.is_scream for c in site_clips) < 3:
        raise DataError(
            f"{manifest} has {sum(not c.is_scream for c in site_clips)} 'non_scream' clip(s); adapting needs "
            "at least 3 (label the site's false alarms in 'scream review', then 'scream deploy pull')"
        )
    parts = split_site(site_clips, config)
    corpus_parts = _corpus_splits(corpus, base_splits)
    cache = WaveformCache.at(config.cache_dir, features.sample_rate_hz)
    rng = np.random.default_rng(config.seed)
    replay = _replay(corpus_parts["train"], config.replay_clips, rng)
    prepared_site = {name: prepare(getattr(parts, name), cache, skipped) for name in ("train", "validation", "test")}
    prepared_replay = prepare(replay, cache, skipped)
    corpus_val = prepare(corpus_parts["validation"], cache, skipped)
    _log(
        f"adapting {model.name} on {manifest}: {len(prepared_site['train'].clips)} site clips to learn from, "
        f"{len(prepared_site['validation'].clips)} for the operating point, {len(prepared_site['test'].clips)} "
        f"for the report; {len(prepared_replay.clips)} corpus clips replayed"
    )

    # The site's non-screams as `site_share` of the negative draws (repeated into the pool).
    site_negatives = [
        (c, w)
        for c, w in zip(prepared_site["train"].clips, prepared_site["train"].waves, strict=True)
        if not c.is_scream
    ]
    site_screams = [
        (c, w) for c, w in zip(prepared_site["train"].clips, prepared_site["train"].waves, strict=True) if c.is_scream
    ]
    replay_weight = sum(negative_weight(c, recipe) for c in prepared_replay.clips if not c.is_scream)
    repeat = max(
        1, math.ceil(config.site_share / (1 - config.site_share) * replay_weight / max(len(site_negatives), 1))
    )
    pool = PreparedSplit(
        clips=list(prepared_replay.clips) + [c for c, _ in site_screams] + [c for c, _ in site_negatives] * repeat,
        waves=list(prepared_replay.waves) + [w for _, w in site_screams] + [w for _, w in site_negatives] * repeat,
    )
    if config.keep not in ("labels", "base"):
        raise DataError(f"keep must be 'labels' or 'base', got {config.keep!r}")
    if config.operating_point not in OPERATING_POINTS:
        raise DataError(
            f"operating_point must be one of {', '.join(map(repr, OPERATING_POINTS))}, got {config.operating_point!r}"
        )
    batches = AugmentedBatches(pool, features, recipe, AugmentParams())
    if config.keep == "base":
        half = replace(recipe, batch_size=max(2, recipe.batch_size // 2))
        screams = [(c, w) for c, w in zip(prepared_replay.clips, prepared_replay.waves, strict=True) if c.is_scream]
        site_pool = PreparedSplit(
            clips=[c for c, _ in screams + site_screams + site_negatives],
            waves=[w for _, w in screams + site_screams + site_negatives],
        )
        batches = AugmentedBatches(site_pool, features, half, AugmentParams())
        replay_batches = AugmentedBatches(prepared_replay, features, replace(half, seed=half.seed + 1), AugmentParams())

    validation = PreparedSplit(
        corpus_val.clips + prepared_site["validation"].clips, corpus_val.waves + prepared_site["validation"].waves
    )
    val = eval_windows(validation, features, recipe)
    # Whatever ran before in this process (other models, other adaptations), the same inputs and seed
    # give the same adapted model: Keras' global state is cleared and its seeds set.
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    network = rebuild(float_path)
    sample = val.windows[
        np.random.default_rng(config.seed).choice(len(val.windows), min(64, len(val.windows)), replace=False)
    ]
    rebuild_error = check_rebuild(network, float_path, sample)
    set_trainable(network, config.train)
    network.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        # Soft targets need no smoothing: smoothing the base model's scores would lift every negative.
        loss=keras.losses.BinaryCrossentropy(
            label_smoothing=recipe.label_smoothing if config.keep == "labels" else 0.0
        ),
    )
    fit_started = time.monotonic()
    sequence = (
        _keras_sequence(batches, config.steps_per_epoch)
        if config.keep == "labels"
        else _keep_base_sequence(batches, replay_batches, rebuild(float_path), config.steps_per_epoch)
    )
    history = network.fit(sequence, epochs=config.epochs, verbose=config.verbose)
    fit_seconds = time.monotonic() - fit_started

    staging = out_path.parent / f".adapt-{out_path.stem}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    staged = staging / out_path.name
    corpus_test = prepare(corpus_parts["test"], cache, skipped)
    check = eval_windows(
        PreparedSplit(corpus_test.clips + prepared_site["test"].clips, corpus_test.waves + prepared_site["test"].waves),
        features,
        recipe,
    )
    val_scores = network.predict(val.windows[..., None], batch_size=256, verbose=0).reshape(-1)

    def carried_over(int8: Classifier) -> dict[str, Any]:  # the corpus validation windows, cut only when needed
        corpus_windows = eval_windows(corpus_val, features, recipe)
        negatives = corpus_windows.windows[~corpus_windows.labels]
        if config.operating_point == "matched":
            return matched_operating_point(base, int8, negatives)
        point = held_operating_point(
            base, int8, corpus_val.clips, corpus_val.waves, negatives, scenes=config.scenes, seed=config.seed
        )
        b, a = point["base_validation"], point["validation"]
        _log(
            f"operating point held to the base model's trade: on {point['on']}, off {point['off']}; validation scenes "
            f"{a['event_recall']} recall at {a['false_alarms_per_hour']} false alarms/h (base {b['event_recall']} at "
            f"{b['false_alarms_per_hour']})"
        )
        return point

    representative = np.concatenate([*(batches.batch(1000 + i)[0][..., 0] for i in range(4)), val.windows[:400]])
    site_manifest_sha = hashlib.sha256(manifest.read_bytes()).hexdigest()
    sidecar = export_model(
        network,
        staged,
        features=features,
        window_frames=recipe.window_frames,
        hop_frames=recipe.hop_frames,
        representative=representative,
        check_windows=check.windows,  # what the report scores: the corpus test clips and the site's report part
        thresholds=choose_thresholds(val.labels, val_scores, recipe),
        metadata={
            "adapted": {
                "base_model": model.name,
                "base_sha256": base.sha256,
                "site_data": str(manifest),
                "site_manifest_sha256": site_manifest_sha,
                "site_clips": {k: len(v.clips) for k, v in prepared_site.items()},
                "replay_clips": len(prepared_replay.clips),
                "config": asdict(config),
            },
            "training": {"config": asdict(recipe), "adapted_from": base.sha256},
        },
        operating_point=(
            (lambda int8: _operating_point(int8, validation, val, recipe))
            if config.operating_point == "rechoose"
            else carried_over
        ),
    )
    (staging / "model-float.tflite").write_bytes(convert_float(network))

    _log("scoring the base and the adapted model on the corpus test scenes and the site's report clips")
    report_dir.mkdir(parents=True, exist_ok=True)
    adapted = Classifier(staged, expected_features=features)
    before_site = site_outcome(base, prepared_site["test"].clips, prepared_site["test"].waves)
    after_site = site_outcome(adapted, prepared_site["test"].clips, prepared_site["test"].waves)
    before_corpus = _corpus_outcome(model, corpus, base_splits, report_dir / "corpus-base", config)
    after_corpus = _corpus_outcome(staged, corpus, base_splits, report_dir / "corpus-adapted", config)
    drop = before_corpus["event_recall"] - after_corpus["event_recall"]
    # One more false alarm than the base model's in the same scenes is within noise; past that, a rise.
    rise = config.max_false_alarm_rise
    allowed_fa = (
        before_corpus["false_alarms_per_hour"] * (1 + rise) + 1 / max(before_corpus["hours"], 1e-9)
        if rise is not None
        else float("inf")
    )
    problems = []
    if drop > config.max_recall_drop:
        problems.append(
            f"finds {after_corpus['event_recall']:.1%} of the corpus test screams against the base model's "
            f"{before_corpus['event_recall']:.1%}, {drop:.1%} lower (at most {config.max_recall_drop:.1%} is allowed)"
        )
    if after_corpus["false_alarms_per_hour"] > allowed_fa:
        problems.append(
            f"raises {after_corpus['false_alarms_per_hour']:.1f} false alarms per hour in the corpus test scenes "
            f"against the base model's {before_corpus['false_alarms_per_hour']:.1f} (at most {allowed_fa:.1f} is "
            f"allowed: +{rise:.0%} and one alarm)"
        )
    report = {
        "base_model": str(model),
        "base_sha256": base.sha256,
        "adapted_model": str(out_path),
        "site_data": str(manifest),
        "skipped": skipped,
        "rebuild_max_score_difference": rebuild_error,
        "fine_tune_seconds": round(fit_seconds, 1),
        "seconds": round(time.monotonic() - started, 1),
        "loss": [round(float(v), 4) for v in history.history.get("loss", [])],
        "site": {"before": before_site, "after": after_site},
        "corpus": {"before": before_corpus, "after": after_corpus, "recall_drop": round(drop, 4)},
        "max_recall_drop": config.max_recall_drop,
        "max_false_alarms_per_hour": round(allowed_fa, 3) if rise is not None else None,
        "refused_because": problems,
        "operating_point": {
            k: sidecar["thresholds"].get(k) for k in ("on", "off", "patience_windows", "patience_of", "chosen_by")
        },
        "int8_check": sidecar.get("int8_check"),
        "published": not problems,
    }
    (report_dir / "adapt.json").write_text(json.dumps(report, indent=2) + "\n")
    (report_dir / "adapt.md").write_text(render(report))
    if not report["published"]:
        shutil.rmtree(staging, ignore_errors=True)
        raise AdaptRefused(f"not exported: the adapted model {'; and '.join(problems)}; see {report_dir / 'adapt.md'}")
    run_dir = out_path.parent / f"{out_path.stem}-run"
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.move(str(staging / "model-float.tflite"), run_dir / "model-float.tflite")
    shutil.copy(base_splits, run_dir / "splits.tsv")  # the corpus held out stays the base model's
    staged.replace(out_path)
    staged.with_suffix(".json").replace(out_path.with_suffix(".json"))
    shutil.rmtree(staging, ignore_errors=True)
    assert sha256_file(out_path) == sidecar["sha256"]
    _log(f"exported {out_path}; report {report_dir / 'adapt.md'}")
    return report


def render(report: dict[str, Any]) -> str:
    s, c, point = report["site"], report["corpus"], report["operating_point"]
    rows = [
        ("site false alarms per hour of non-scream audio", "false_alarms_per_hour", s),
        ("site non-scream clips that fire", "non_scream_clips_firing", s),
        ("site scream clips found", "scream_clips_found", s),
        ("corpus test scenes: screams found", "event_recall", c),
        ("corpus test scenes: false alarms per hour", "false_alarms_per_hour", c),
        ("corpus test scenes: median onset to alarm (s)", "median_onset_to_alarm_s", c),
    ]
    lines = [
        f"# Adapted {Path(report['adapted_model']).name} from {Path(report['base_model']).name}",
        "",
        f"Site data {report['site_data']}: {s['before']['non_scream_clips']} non-scream and "
        f"{s['before']['scream_clips']} scream clips held out for this report "
        f"({s['before']['non_scream_hours'] * 60:.1f} min of non-scream audio). Corpus: the base model's test "
        f"clips, {c['before']['screams']} screams in its scenes.",
        "",
        "| | base | adapted |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {part['before'][key]} | {part['after'][key]} |" for name, key, part in rows),
        "",
        f"Corpus recall drop {c['recall_drop']:+.3f} (at most {report['max_recall_drop']} allowed), corpus false "
        f"alarms per hour at most {report['max_false_alarms_per_hour']}: "
        + (
            "**published**."
            if report["published"]
            else "**refused, not exported**: " + "; ".join(report["refused_because"]) + "."
        ),
        "",
        f"Operating point: on {point['on']}, off {point['off']}, {point['patience_windows']} of "
        f"{point['patience_of']} windows; {point.get('chosen_by') or 'chosen as training chooses'}.",
        "",
        f"Fine-tuning {report['fine_tune_seconds']} s, all {report['seconds']} s; int8 check {report['int8_check']}; "
        f"the rebuilt network matched the base float model to {report['rebuild_max_score_difference']:.1e}.",
        "",
    ]
    return "\n".join(lines)
