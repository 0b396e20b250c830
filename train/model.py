"""The small CNN on one log-mel window (depthwise-separable blocks), built with Keras."""

from __future__ import annotations

from typing import Any

# How the last feature map is pooled before the scream unit (build_model's `head`).
HEADS = ("global", "frequency", "mean-max")


def build_model(
    *,
    window_frames: int,
    mel_bands: int,
    feature_mean: float,
    feature_std: float,
    width: int = 24,
    dropout: float = 0.2,
    seed: int = 0,
    head: str = "global",
    name: str = "scream_cnn",
    distill_dim: int = 0,
    distill_target: str = "embedding",
) -> Any:
    """A Keras model: log-mel window (frames, mels, 1) -> scream probability.

    `head` "global" averages the last feature map over time and frequency; "frequency" averages over
    time only and keeps each mel region apart, so the classifier knows where in the spectrum (how
    high) a sound is, not only what its local texture looks like; "mean-max" averages over frequency,
    then adds the mean and the maximum over time (as PANNs' audio taggers pool): a sound that fills
    only part of the window (a scream that has just begun) still reaches its full strength in the
    maximum, where the global mean dilutes it with the background before it.

    `distill_dim` > 0 adds a second output, "teacher", trained towards the teacher's view of the same
    audio (train/distill.py): for `distill_target` "embedding" a unit-length `distill_dim`-d
    projection of the pooled features, for "scores" `distill_dim` sigmoids (one per teacher class).
    `scream_only` drops it again for export and ensembles."""
    if head not in HEADS:
        raise ValueError(f"unknown model head {head!r}: expected one of {', '.join(map(repr, HEADS))}")
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(window_frames, mel_bands, 1), name="logmel")
    # Fixed standardisation from training statistics; int8 conversion folds it into the graph.
    x = layers.Rescaling(scale=1.0 / feature_std, offset=-feature_mean / feature_std)(inputs)
    x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU(6.0)(x)
    for filters, stride in ((2 * width, 2), (2 * width, 1), (4 * width, 2), (4 * width, 1)):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU(6.0)(x)
        x = layers.Conv2D(filters, 1, use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU(6.0)(x)
    if head == "global":
        x = layers.GlobalAveragePooling2D()(x)
    elif head == "mean-max":
        # Pooling layers, not reductions: int8 TFLite runs them as AVERAGE_POOL_2D, MAX_POOL_2D and ADD.
        x = layers.AveragePooling2D(pool_size=(1, x.shape[2]))(x)
        x = layers.Add()(
            [layers.AveragePooling2D(pool_size=(x.shape[1], 1))(x), layers.MaxPooling2D(pool_size=(x.shape[1], 1))(x)]
        )
        x = layers.Flatten()(x)
    else:
        x = layers.AveragePooling2D(pool_size=(x.shape[1], 1))(x)
        x = layers.Flatten()(x)
    features = x
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid", name="scream")(x)
    if distill_dim <= 0:
        return keras.Model(inputs, outputs, name=name)
    if distill_target == "scores":
        teacher = layers.Dense(distill_dim, activation="sigmoid", name="teacher")(features)
    elif distill_target == "embedding":
        projected = layers.Dense(distill_dim, name="teacher_projection")(features)
        teacher = layers.UnitNormalization(name="teacher")(projected)
    else:
        raise ValueError(f"unknown distillation target {distill_target!r}: expected 'embedding' or 'scores'")
    return keras.Model(inputs, {"scream": outputs, "teacher": teacher}, name=name)


def scream_only(model: Any) -> Any:
    """The model with only its scream output (the same layers and weights): what is exported."""
    import keras

    if not isinstance(model.output, dict):
        return model
    return keras.Model(model.input, model.output["scream"], name=model.name)


def build_ensemble(members: list[Any]) -> Any:
    """One Keras model whose output is the mean of the members' scream probabilities, so the edge
    runs the ensemble as a single int8 TFLite model with the same input and output. The members'
    names must differ (build_model's `name`)."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=members[0].input_shape[1:], name="logmel")
    outputs = [member(inputs) for member in members]
    averaged = layers.Average(name="scream")(outputs)
    return keras.Model(inputs, averaged, name=f"scream_ensemble_{len(members)}")


def _scream_units(model: Any) -> list[Any]:
    """The sigmoid Dense layers named "scream" in `model` and in the members nested in it."""
    found = []
    for layer in model.layers:
        if hasattr(layer, "layers"):
            found += _scream_units(layer)
        elif layer.name == "scream" and getattr(getattr(layer, "activation", None), "__name__", "") == "sigmoid":
            found.append(layer)
    return found


def output_temperature(scores: Any, logit_max: float) -> float:
    """How much to soften the scream output so that the largest of `scores` (the model's scream
    probabilities on representative windows) has logit `logit_max`; 1.0 when it already is at or
    below it. int8 holds a sigmoid's output in steps of 1/256 up to 0.996 (logit 5.5): scores
    above that tie, and a threshold among them cannot be chosen."""
    import numpy as np

    if logit_max <= 0:
        raise ValueError(f"logit_max must be > 0, got {logit_max}")
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-12, 1 - 1e-12)
    largest = float(np.max(np.log(p) - np.log1p(-p))) if p.size else 0.0
    return max(1.0, largest / logit_max)


def soften_output(model: Any, temperature: float) -> int:
    """Divide the logit of every scream unit in `model` (each ensemble member's) by `temperature`,
    in place, by scaling that unit's weights and bias: the same ranking of windows from a single
    network, the scores spread below 1 where int8 can tell them apart. Returns how many units."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    units = _scream_units(model)
    if not units:
        raise ValueError(f"model {model.name} has no sigmoid unit named 'scream'")
    for unit in units:
        unit.set_weights([w / temperature for w in unit.get_weights()])
    return len(units)
