"""Face verification metrics: the LFW protocol, VAL at FAR, ROC and AUC, a threshold.

Verification decides "same person" when the distance between two encodings is
at most a threshold tau. Everything here takes the distances of a list of pairs
and a boolean ``same`` per pair, so it serves any encoder and any distance.

* :func:`lfw_protocol` is the LFW "view 2" recipe: ten folds; for each, tau is
  chosen on the other nine to maximise accuracy and the accuracy is measured on
  the held-out one; the mean and standard deviation over folds are reported
  (population std, ``ddof=0``, as FaceNet's and InsightFace's evaluation code do).
* :func:`val_far` is FaceNet's figure (Schroff et al. 2015): VAL, the fraction of
  same pairs accepted, at the largest tau whose FAR (the fraction of different
  pairs accepted) is at most a target such as 1e-3.
* :func:`roc_curve` and :func:`auc` follow scikit-learn's ``roc_curve`` (with
  ``drop_intermediate=False``) and ``roc_auc_score`` on the score ``-distance``;
  they are written here because the run-time dependency is NumPy only.
* :func:`lfw_style_pairs` draws an LFW-like pair list from labelled images:
  folds of disjoint people, each with as many same as different pairs.
* :func:`choose_threshold` picks tau for deployment: the most accurate one for
  1:1 verification, or (``far=``) the largest within a false accept rate for
  recognition with strangers to reject, e.g. over :func:`all_pairs` of held-out people.

Plots (:func:`plot_roc`, :func:`plot_distance_histograms`) need the ``plot``
extra (matplotlib).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np

from .. import _validate

__all__ = [
    "ProtocolResult",
    "ValFar",
    "all_pairs",
    "auc",
    "choose_threshold",
    "lfw_protocol",
    "lfw_style_pairs",
    "pair_distances",
    "plot_distance_histograms",
    "plot_roc",
    "roc_curve",
    "val_far",
    "verification_summary",
]


class ProtocolResult(NamedTuple):
    """The result of :func:`lfw_protocol`."""

    mean: float
    """Mean accuracy over the folds."""
    std: float
    """Standard deviation of the fold accuracies (``ddof=0``)."""
    accuracies: np.ndarray
    """``(folds,)`` accuracy on each held-out fold."""
    thresholds: np.ndarray
    """``(folds,)`` tau chosen on the other folds."""


class ValFar(NamedTuple):
    """The result of :func:`val_far`."""

    val: float
    """Fraction of same pairs with distance <= ``threshold``."""
    far: float
    """Fraction of different pairs with distance <= ``threshold`` (at most the target)."""
    threshold: float


def _pairs(distances: Any, same: Any, fn: str, *, both: bool = True) -> tuple[np.ndarray, ...]:
    """Checked 1-D float64 distances and bool ``same`` of equal, non-zero length."""
    d = np.asarray(distances)
    s = np.asarray(same)
    if d.dtype == object or not (
        np.issubdtype(d.dtype, np.floating) or np.issubdtype(d.dtype, np.integer)
    ):
        raise TypeError(f"{fn}: distances must be an array of real numbers, got dtype {d.dtype}")
    if d.ndim != 1:
        raise ValueError(f"{fn}: distances must be 1-D, got shape {d.shape}")
    if d.size == 0 and s.size == 0:
        raise ValueError(f"{fn}: distances must not be empty")
    if s.dtype != np.bool_:
        raise TypeError(
            f"{fn}: same must be an array of bools (True for pairs of one person), "
            f"got dtype {s.dtype}"
        )
    if s.shape != d.shape:
        raise ValueError(
            f"{fn}: distances and same must have the same length, got {d.shape} and {s.shape}"
        )
    d = d.astype(np.float64)
    if not np.all(np.isfinite(d)):
        bad = int(np.flatnonzero(~np.isfinite(d))[0])
        raise ValueError(f"{fn}: distances must be finite, got {d[bad]} at index {bad}")
    if both and (s.all() or not s.any()):
        kind = "same" if s.all() else "different"
        raise ValueError(
            f"{fn}: needs both same and different pairs, got only {kind} pairs ({s.size})"
        )
    return d, s


def _sweep(d: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct sorted distances and the counts of same / different pairs at or below each."""
    order = np.argsort(d, kind="stable")
    ds, ss = d[order], s[order]
    last = np.r_[ds[1:] != ds[:-1], True]  # the last of each run of equal distances
    tp = np.cumsum(ss)[last]
    fp = np.cumsum(~ss)[last]
    return ds[last], tp, fp


def roc_curve(distances: Any, same: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve of the rule "same when distance <= threshold".

    Parameters
    ----------
    distances : array_like, (n,)
        Finite distances of the pairs.
    same : array_like of bool, (n,)
        True where the pair shows one person; both kinds must occur.

    Returns
    -------
    far : numpy.ndarray
        False accept rate (false positive rate) at each threshold, increasing from 0 to 1.
    tar : numpy.ndarray
        True accept rate (VAL, recall) at each threshold.
    thresholds : numpy.ndarray
        The distinct distances in increasing order, preceded by ``-inf`` (nothing accepted).
        Equals ``-thresholds`` of ``sklearn.metrics.roc_curve(same, -distances,
        drop_intermediate=False)``.
    """
    d, s = _pairs(distances, same, "roc_curve()")
    values, tp, fp = _sweep(d, s)
    far = np.r_[0.0, fp / fp[-1]]
    tar = np.r_[0.0, tp / tp[-1]]
    return far, tar, np.r_[-np.inf, values]


def auc(far: Any, tar: Any) -> float:
    """Area under a curve by the trapezoidal rule (``far`` must be monotonic).

    ``auc(*roc_curve(d, same)[:2])`` equals ``sklearn.metrics.roc_auc_score(same, -d)``.
    """
    x = np.asarray(far, dtype=np.float64)
    y = np.asarray(tar, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size < 2:
        raise ValueError(
            f"auc(): far and tar must be 1-D of one length >= 2, got {x.shape} and {y.shape}"
        )
    step = np.diff(x)
    if not (np.all(step >= 0) or np.all(step <= 0)):
        raise ValueError("auc(): far must be monotonic (increasing or decreasing)")
    return float(abs(np.sum(step * (y[1:] + y[:-1]) / 2.0)))


def _best_threshold(d: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """(tau, accuracy) maximising the accuracy of "same when d <= tau" on these pairs."""
    values, tp, fp = _sweep(d, s)
    n, n_same = d.size, int(s.sum())
    # Candidate i accepts the i smallest distinct values (i = 0: nothing).
    correct = np.r_[n - n_same, tp + (n - n_same - fp)]
    i = int(np.argmax(correct))  # the smallest tau among equally good ones
    if i == 0:
        tau = float(np.nextafter(values[0], -np.inf))
    elif i == values.size:
        tau = float(values[-1])
    else:
        tau = float((values[i - 1] + values[i]) / 2.0)  # midway between accepted and not
    return tau, float(correct[i] / n)


def choose_threshold(distances: Any, same: Any, *, far: float | None = None) -> tuple[float, float]:
    """A verification threshold tau chosen on labelled pairs: "same" when ``d <= tau``.

    Without ``far``, tau maximises the accuracy on these pairs (ties go to the
    smallest tau). That suits 1:1 verification with as many same as different
    pairs, and is what the LFW protocol does on its nine folds.

    With ``far``, tau is the largest threshold whose false accept rate on these
    pairs (the fraction of different pairs with ``d <= tau``) is at most ``far``.
    Use it for recognition (1:K) with rejection of unknown people: a stranger
    is compared with every enrolled person and is falsely accepted when any of
    them lies within tau, which happens with probability up to about ``K * far``
    -- the accuracy-maximising tau of balanced pairs lets most strangers in. For
    example ``far=1e-3`` with 100 enrolled people rejects about 90% of strangers.
    Choose it on held-out validation pairs (people neither enrolled nor used in
    training), with many more than ``1 / far`` different pairs: every pair of a
    validation set's images (:func:`all_pairs`) gives that cheaply.

    Either way tau lies midway between the largest accepted distance and the
    next one.

    Parameters
    ----------
    distances : array_like, (n,)
    same : array_like of bool, (n,)
    far : float in [0, 1], optional
        The target false accept rate.

    Returns
    -------
    tau : float
        Decide "same" when ``distance <= tau``.
    accuracy : float
        The accuracy at ``tau`` on these pairs (optimistic: measured where tau was chosen).
    """
    fn = "choose_threshold()"
    d, s = _pairs(distances, same, fn)
    if far is None:
        return _best_threshold(d, s)
    target = _validate.probability(fn, "far", far)
    values, tp, fp = _sweep(d, s)
    # Candidate i accepts the i smallest distinct values; fp grows with i.
    accepted = np.r_[0, fp]
    i = int(np.flatnonzero(accepted <= target * fp[-1])[-1])
    if i == 0:
        tau = float(np.nextafter(values[0], -np.inf))
    elif i == values.size:
        tau = float(values[-1])
    else:
        tau = float((values[i - 1] + values[i]) / 2.0)
    correct = np.r_[0, tp][i] + (fp[-1] - accepted[i])
    return tau, float(correct / d.size)


def all_pairs(labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every unordered pair of distinct images: ``(left, right, same)``.

    ``n (n - 1) / 2`` pairs for ``n`` labels (1.3 million for 1,600 images), enough
    different pairs to choose a threshold at a false accept rate of 1e-3 or below
    (:func:`choose_threshold` with ``far``).
    """
    fn = "all_pairs()"
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{fn}: labels must be a 1-D int array, got {y.dtype} {y.shape}")
    left, right = np.triu_indices(y.size, k=1)
    return left.astype(np.int64), right.astype(np.int64), y[left] == y[right]


def _fold_ids(folds: Any, n: int, fn: str) -> np.ndarray:
    if isinstance(folds, (int, np.integer)) and not isinstance(folds, bool):
        k = _validate.integer(fn, "folds", folds, minimum=2)
        if k > n:
            raise ValueError(f"{fn}: folds must be <= the number of pairs ({n}), got {k}")
        # Contiguous folds, as LFW's pairs.txt lists its ten sets one after the other.
        return np.repeat(np.arange(k), [len(c) for c in np.array_split(np.arange(n), k)])
    ids = np.asarray(folds)
    if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"{fn}: folds must be an int >= 2 or an int array of one fold id per pair "
            f"(shape ({n},)), got {ids.dtype} array of shape {ids.shape}"
        )
    if np.unique(ids).size < 2:
        raise ValueError(f"{fn}: folds must hold at least 2 distinct fold ids")
    return ids


def lfw_protocol(distances: Any, same: Any, folds: Any = 10) -> ProtocolResult:
    """Verification accuracy by the LFW protocol: k-fold, tau chosen on the other folds.

    Parameters
    ----------
    distances : array_like, (n,)
    same : array_like of bool, (n,)
    folds : int or array_like of int
        The number of contiguous folds (LFW's pairs.txt lists its 10 sets in
        order, so ``10`` reproduces view 2), or a fold id per pair.

    Returns
    -------
    ProtocolResult
        ``mean`` and ``std`` of the held-out accuracies, and per fold the
        accuracy and the tau chosen on the other folds.
    """
    fn = "lfw_protocol()"
    d, s = _pairs(distances, same, fn)
    ids = _fold_ids(folds, d.size, fn)
    accuracies, thresholds = [], []
    for fold in np.unique(ids):
        test = ids == fold
        train = ~test
        if s[train].all() or not s[train].any():
            raise ValueError(
                f"{fn}: the folds other than fold {fold} need both same and different pairs"
            )
        tau, _ = _best_threshold(d[train], s[train])
        accuracies.append(np.mean((d[test] <= tau) == s[test]))
        thresholds.append(tau)
    acc = np.array(accuracies)
    return ProtocolResult(float(acc.mean()), float(acc.std()), acc, np.array(thresholds))


def val_far(distances: Any, same: Any, far: float = 1e-3) -> ValFar:
    """FaceNet's VAL at a false accept rate: the largest tau with FAR(tau) <= ``far``.

    Parameters
    ----------
    distances : array_like, (n,)
    same : array_like of bool, (n,)
    far : float in [0, 1]
        The target false accept rate. With ``m`` different pairs, at most
        ``floor(far * m)`` of them are accepted, so 1e-3 needs thousands of them
        to mean anything (it is 0 below 1,000).

    Returns
    -------
    ValFar
        ``val`` (the true accept rate), the ``far`` reached and the ``threshold``.
    """
    fn = "val_far()"
    target = _validate.probability(fn, "far", far)
    d, s = _pairs(distances, same, fn)
    values, tp, fp = _sweep(d, s)
    n_same, n_diff = tp[-1], fp[-1]
    ok = np.flatnonzero(fp <= target * n_diff)
    if ok.size == 0:  # even the smallest distance lets too many different pairs in
        return ValFar(0.0, 0.0, float(np.nextafter(values[0], -np.inf)))
    i = int(ok[-1])  # fp grows with i, so the last good one is the largest tau
    return ValFar(float(tp[i] / n_same), float(fp[i] / n_diff), float(values[i]))


def verification_summary(
    distances: Any, same: Any, *, folds: Any = 10, far: float = 1e-3
) -> dict[str, float]:
    """The usual verification figures in one dict.

    Keys: ``accuracy`` and ``accuracy_std`` (:func:`lfw_protocol`), ``val``,
    ``far`` and ``val_threshold`` (:func:`val_far`), ``auc``, and ``threshold``
    and ``train_accuracy`` (:func:`choose_threshold` on all pairs).
    """
    protocol = lfw_protocol(distances, same, folds)
    vf = val_far(distances, same, far)
    tau, acc = choose_threshold(distances, same)
    fpr, tpr, _ = roc_curve(distances, same)
    return {
        "accuracy": protocol.mean,
        "accuracy_std": protocol.std,
        "val": vf.val,
        "far": vf.far,
        "val_threshold": vf.threshold,
        "auc": auc(fpr, tpr),
        "threshold": tau,
        "train_accuracy": acc,
    }


def pair_distances(a: Any, b: Any, metric: str = "euclidean") -> np.ndarray:
    """Row-wise distances between two ``(n, ...)`` arrays of encodings (flattened per row).

    ``metric``: ``"euclidean"``, ``"squared"`` (squared euclidean, FaceNet's) or
    ``"cosine"`` (one minus the cosine similarity). Computed in float64.
    """
    fn = "pair_distances()"
    kind = _validate.choice(fn, "metric", metric, ("euclidean", "squared", "cosine"))
    x = np.asarray(a)
    y = np.asarray(b)
    if x.shape != y.shape or x.ndim < 1:
        raise ValueError(f"{fn}: a and b must have one shape (n, ...), got {x.shape} and {y.shape}")
    x = x.reshape(len(x), -1).astype(np.float64)
    y = y.reshape(len(y), -1).astype(np.float64)
    if kind == "cosine":
        norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
        return 1.0 - np.einsum("ij,ij->i", x, y) / np.where(norms > 0, norms, 1.0)
    diff = x - y
    sq = np.einsum("ij,ij->i", diff, diff)
    return sq if kind == "squared" else np.sqrt(sq)


def lfw_style_pairs(
    labels: Any, *, folds: int = 10, pairs_per_fold: int = 600, seed: Any = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An LFW-like list of verification pairs over labelled images.

    The people are split into ``folds`` groups; each fold draws
    ``pairs_per_fold // 2`` same pairs (two different images of one of its
    people, who must have at least two) and as many different pairs, only among
    its own people, so no person appears in two folds (as in LFW view 2). Pairs
    are listed fold by fold, so ``lfw_protocol(d, same, folds)`` uses these folds.

    Returns
    -------
    left, right : numpy.ndarray of int64
        Image indices of each pair.
    same : numpy.ndarray of bool
    fold : numpy.ndarray of int64
    """
    fn = "lfw_style_pairs()"
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{fn}: labels must be a 1-D int array, got {y.dtype} {y.shape}")
    k = _validate.integer(fn, "folds", folds, minimum=1)
    per = _validate.integer(fn, "pairs_per_fold", pairs_per_fold, minimum=2)
    rng = _validate.generator(fn, seed)
    people = np.unique(y)
    if people.size < 2 * k:
        raise ValueError(
            f"{fn}: labels must hold at least 2 people per fold ({2 * k}), got {people.size}"
        )
    groups = np.array_split(rng.permutation(people), k)
    n_same, n_diff = per // 2, per - per // 2
    # Images grouped by person: person p's are order[start[p] : start[p] + count[p]].
    order = np.argsort(y, kind="stable")
    first = np.searchsorted(y[order], people)
    count = np.r_[first[1:], y.size] - first
    out: list[list[np.ndarray]] = [[], [], [], []]
    for f, group in enumerate(groups):
        idx = np.searchsorted(people, group)
        multi = idx[count[idx] >= 2]
        if multi.size == 0:
            raise ValueError(f"{fn}: fold {f} has nobody with two images for a same pair")
        # Same: a person with two or more images, two distinct images of theirs.
        who = multi[rng.integers(0, multi.size, n_same)]
        i = rng.integers(0, count[who])
        j = rng.integers(0, count[who] - 1)
        j += j >= i
        # Different: two distinct people of the fold, any image of each.
        p = rng.integers(0, idx.size, n_diff)
        q = rng.integers(0, idx.size - 1, n_diff)
        q += q >= p
        p, q = idx[p], idx[q]
        a = first[p] + rng.integers(0, count[p])
        b = first[q] + rng.integers(0, count[q])
        out[0] += [order[first[who] + i], order[a]]
        out[1] += [order[first[who] + j], order[b]]
        out[2] += [np.ones(n_same, bool), np.zeros(n_diff, bool)]
        out[3] += [np.full(per, f, np.int64)]
    left_all, right_all, same_all, fold_all = (np.concatenate(part) for part in out)
    return left_all, right_all, same_all, fold_all


def _figure() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "cnnkit.face.evaluate plots need matplotlib: pip install 'cnnkit[plot]'"
        ) from err
    fig = Figure(figsize=(5, 4), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_roc(
    distances: Any, same: Any, path: str | os.PathLike, *, far: float | None = 1e-3
) -> None:
    """Write the ROC curve (log FAR axis) to a PNG at ``path``, with the AUC in the legend
    and, unless ``far`` is None, the VAL at that FAR marked."""
    fpr, tpr, _ = roc_curve(distances, same)
    fig = _figure()
    ax = fig.add_subplot()
    positive = fpr > 0
    ax.plot(fpr[positive], tpr[positive], label=f"ROC (AUC {auc(fpr, tpr):.4f})")
    if far is not None:
        vf = val_far(distances, same, far)
        ax.axvline(far, color="grey", linestyle=":", label=f"VAL {vf.val:.3f} @ FAR {far:g}")
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate (different pairs accepted)")
    ax.set_ylabel("true accept rate (same pairs accepted)")
    ax.set_ylim(0.0, 1.01)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")


def plot_distance_histograms(
    distances: Any,
    same: Any,
    path: str | os.PathLike,
    *,
    threshold: float | None = None,
    bins: int = 50,
) -> None:
    """Write the histograms of same-pair and different-pair distances to a PNG at
    ``path``; ``threshold`` (default :func:`choose_threshold`'s) is drawn as a line."""
    d, s = _pairs(distances, same, "plot_distance_histograms()")
    bins = _validate.integer("plot_distance_histograms()", "bins", bins, minimum=1)
    tau = _best_threshold(d, s)[0] if threshold is None else float(threshold)
    fig = _figure()
    ax = fig.add_subplot()
    edges = np.histogram_bin_edges(d, bins=bins)
    ax.hist(d[s], bins=edges, alpha=0.6, label=f"same ({int(s.sum())})")
    ax.hist(d[~s], bins=edges, alpha=0.6, label=f"different ({int((~s).sum())})")
    ax.axvline(tau, color="black", linestyle="--", label=f"threshold {tau:.3g}")
    ax.set_xlabel("distance")
    ax.set_ylabel("pairs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")
