"""Classification metrics in numpy: ROC and PR curves, AUCs, recall at a false-positive rate."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def _ranked_counts(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[Array, Array, Array, int, int]:
    """Distinct thresholds (highest first), true and predicted positives at each, positives, negatives."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[distinct].astype(np.float64)
    predicted = (distinct + 1).astype(np.float64)
    return s[distinct], tps, predicted, max(int(y.sum()), 1), max(int((~y).sum()), 1)


def roc_curve(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[Array, Array, Array]:
    """False-positive rates, true-positive rates and thresholds (scores >= threshold are positive)."""
    thresholds, tps, predicted, n_pos, n_neg = _ranked_counts(labels, scores)
    return np.r_[0.0, (predicted - tps) / n_neg], np.r_[0.0, tps / n_pos], np.r_[np.inf, thresholds]


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def pr_curve(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[Array, Array]:
    """Precision and recall at each distinct threshold, highest threshold first."""
    _, tps, predicted, n_pos, _ = _ranked_counts(labels, scores)
    return tps / predicted, tps / n_pos


def average_precision(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """PR AUC as average precision (step-wise, no interpolation)."""
    precision, recall = pr_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def threshold_at_fpr(labels: npt.ArrayLike, scores: npt.ArrayLike, fpr_target: float) -> float:
    """Lowest threshold whose false-positive rate on these labels stays at or below the target."""
    y = np.asarray(labels, dtype=bool)
    negatives = np.sort(np.asarray(scores, dtype=np.float64)[~y])[::-1]
    allowed = int(np.floor(fpr_target * negatives.size))
    if negatives.size == 0:
        return 0.5
    # Just above the (allowed+1)-th highest negative score.
    return float(np.nextafter(negatives[min(allowed, negatives.size - 1)], np.inf))


def recall_at_fpr(labels: npt.ArrayLike, scores: npt.ArrayLike, fpr_target: float) -> float:
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= fpr_target].max())


@dataclass(frozen=True)
class Confusion:
    true_positive: int
    false_positive: int
    true_negative: int
    false_negative: int

    @property
    def f1(self) -> float:
        denominator = 2 * self.true_positive + self.false_positive + self.false_negative
        return 2 * self.true_positive / denominator if denominator else 0.0

    @property
    def recall(self) -> float:
        total = self.true_positive + self.false_negative
        return self.true_positive / total if total else 0.0

    @property
    def false_positive_rate(self) -> float:
        total = self.false_positive + self.true_negative
        return self.false_positive / total if total else 0.0


def confusion(labels: npt.ArrayLike, scores: npt.ArrayLike, threshold: float) -> Confusion:
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(scores) >= threshold
    return Confusion(int(np.sum(p & y)), int(np.sum(p & ~y)), int(np.sum(~p & ~y)), int(np.sum(~p & y)))


def cluster_resamples(
    labels: npt.ArrayLike, clusters: npt.ArrayLike, *, resamples: int = 1000, seed: int = 0
) -> Iterator[npt.NDArray[np.intp]]:
    """Index arrays of bootstrap resamples that draw whole clusters with replacement.

    Windows of one clip, or clips of one recording group, are not independent: resampling them one by
    one would make an interval too narrow. Clusters are drawn separately among those holding positives
    and those holding none, so every resample keeps both classes (a cluster with both counts as positive)."""
    y = np.asarray(labels, dtype=bool)
    _, cluster = np.unique(np.asarray(clusters), return_inverse=True)
    members = np.argsort(cluster, kind="stable")
    starts = np.searchsorted(cluster[members], np.arange(cluster.max() + 2))
    has_positive = np.bincount(cluster, weights=y.astype(np.float64)) > 0
    strata = [np.flatnonzero(has_positive), np.flatnonzero(~has_positive)]
    if any(stratum.size == 0 for stratum in strata):
        raise ValueError("a bootstrap interval needs clusters with positives and clusters without")
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        drawn = np.concatenate([rng.choice(stratum, size=stratum.size) for stratum in strata])
        yield np.concatenate([members[starts[c] : starts[c + 1]] for c in drawn])


def _percentiles(values: npt.ArrayLike, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(np.asarray(values, dtype=np.float64), [tail, 1.0 - tail])
    return float(low), float(high)


def cluster_bootstrap_interval(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    clusters: npt.ArrayLike,
    statistic: Callable[[npt.NDArray[np.bool_], Array], float],
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(labels, scores)`, resampling whole clusters."""
    y, s = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=np.float64)
    values = [statistic(y[i], s[i]) for i in cluster_resamples(y, clusters, resamples=resamples, seed=seed)]
    return _percentiles(values, level)


def paired_bootstrap_difference(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    baseline_scores: npt.ArrayLike,
    clusters: npt.ArrayLike,
    statistic: Callable[[npt.NDArray[np.bool_], Array], float],
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """`statistic` of `scores` minus that of `baseline_scores` on the same items, and the percentile
    interval of that difference when both models meet the same resampled clusters (a paired bootstrap:
    far tighter than comparing two separate intervals, since both models face the same hard clips)."""
    y = np.asarray(labels, dtype=bool)
    a, b = np.asarray(scores, dtype=np.float64), np.asarray(baseline_scores, dtype=np.float64)
    if not a.shape == b.shape == y.shape:
        raise ValueError(f"paired scores must have one shape: {a.shape}, {b.shape}, labels {y.shape}")
    values = [
        statistic(y[i], a[i]) - statistic(y[i], b[i])
        for i in cluster_resamples(y, clusters, resamples=resamples, seed=seed)
    ]
    low, high = _percentiles(values, level)
    return statistic(y, a) - statistic(y, b), low, high


def poisson_rate_interval(count: int, exposure: float, *, level: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval of a rate from `count` events in `exposure` (for example hours)."""
    from scipy.stats import chi2

    tail = (1.0 - level) / 2.0
    low = 0.0 if count == 0 else float(chi2.ppf(tail, 2 * count)) / 2.0
    high = float(chi2.ppf(1.0 - tail, 2 * count + 2)) / 2.0
    return low / exposure, high / exposure
