"""Classification metrics in numpy: ROC and PR curves, AUCs, recall at a false-positive rate."""

from __future__ import annotations

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
