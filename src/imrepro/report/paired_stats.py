"""Paired tests of two models on the same items: a difference, its interval and a p-value.

Thin over scipy and statsmodels (nothing here re-implements what they do):

* interval: ``scipy.stats.bootstrap`` with ``paired=True`` on the two score vectors (BCa), statistic
  mean(b) - mean(a);
* p-value: ``scipy.stats.permutation_test`` with ``permutation_type="samples"`` (swaps a and b within a
  pair: a sign flip of the difference; exact when 2**n does not exceed the resamples);
* composite scores (a category mean, the Mean of categories) over several benchmarks: the item
  differences of each benchmark are separate samples of ``scipy.stats.bootstrap`` (resampled within
  their benchmark: a stratified bootstrap, percentile interval) and one sign-flip permutation test over all
  items;
* Holm's correction across a family of p-values: ``statsmodels.stats.multitest.multipletests``.

Both arms must score the same items (:func:`pair_items`): items are paired by id; an item set that differs
between the arms is an error, not something to intersect silently. Items grouped in clusters (MT-Bench: a
question's two turns) are averaged per cluster first, and the clusters are resampled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BATCH = 1000  # resamples evaluated at once: bounds memory on the paper grid (MMLU: 14k items)


@dataclass(frozen=True)
class PairedResult:
    delta: float  # mean(b) - mean(a) over the paired units
    ci_low: float
    ci_high: float
    p_value: float
    n_units: int  # pairs resampled (items, or clusters)

    def significant(self, alpha: float) -> bool:
        return self.p_value < alpha


@dataclass(frozen=True)
class Paired:
    """Two arms' scores on the same units, in one order."""
    a: np.ndarray
    b: np.ndarray
    units: tuple[str, ...]
    n_items: int  # items paired (before clusters were averaged)
    n_excluded: int  # items without a score on either side (unparseable verdicts)


def pair_items(a: Mapping[str, tuple[float | None, str, str]], b: Mapping[str, tuple[float | None, str, str]],
               what: str) -> Paired:
    """Pair two arms' items by id. ``a``/``b``: item id -> (score or None, cluster, doc_hash).

    The two item sets must be equal, and an item's ``doc_hash`` (where both have one) must agree; otherwise
    ValueError naming ``what`` and a few of the offending ids. An item whose score is None on either side
    is left out on both. Items with a cluster are averaged per cluster (the cluster is the unit)."""
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        raise ValueError(f"{what}: the two arms scored different items ({len(only_a)} only in the first, "
                         f"e.g. {only_a[:3]}; {len(only_b)} only in the second, e.g. {only_b[:3]}); a paired "
                         f"comparison needs the same items (same --limit, same data)")
    mismatched = [i for i in a if a[i][2] and b[i][2] and a[i][2] != b[i][2]]
    if mismatched:
        raise ValueError(f"{what}: {len(mismatched)} item(s) have different doc_hash values in the two arms, "
                         f"e.g. {sorted(mismatched)[:3]}: the same id names different documents")
    kept = [i for i in sorted(a) if a[i][0] is not None and b[i][0] is not None]
    units: dict[str, list[str]] = {}
    for item in kept:
        units.setdefault(a[item][1] or item, []).append(item)
    names = tuple(units)
    score_a = np.array([np.mean([a[i][0] for i in units[u]]) for u in names], dtype=float)
    score_b = np.array([np.mean([b[i][0] for i in units[u]]) for u in names], dtype=float)
    return Paired(score_a, score_b, names, len(kept), len(a) - len(kept))


def _mean_difference(b, a, axis=-1):
    return np.mean(b, axis=axis) - np.mean(a, axis=axis)


def paired_difference(a: Sequence[float], b: Sequence[float], *, confidence: float = CONFIDENCE,
                      n_resamples: int = 9999, seed: int = 0) -> PairedResult:
    """mean(b) - mean(a) of paired scores, its bootstrap interval (BCa, ``paired=True``) and the two-sided
    sign-flip permutation p-value; reproducible for a given ``seed``."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be two vectors of one length, not {a.shape} and {b.shape}")
    delta = float(_mean_difference(b, a))
    if len(a) < 2 or np.all(b - a == (b - a)[0]):  # no spread: every resample gives the same difference
        return PairedResult(delta, delta, delta, 1.0 if delta == 0 or len(a) < 2 else 0.0, len(a))
    rng = np.random.default_rng(seed)
    ci = stats.bootstrap((b, a), _mean_difference, paired=True, vectorized=True, confidence_level=confidence,
                         n_resamples=n_resamples, method="BCa", batch=BATCH, rng=rng).confidence_interval
    test = stats.permutation_test((b, a), _mean_difference, permutation_type="samples", vectorized=True,
                                  n_resamples=n_resamples, alternative="two-sided", batch=BATCH, rng=rng)
    return PairedResult(delta, float(ci.low), float(ci.high), float(test.pvalue), len(a))


def composite_difference(differences: Sequence[np.ndarray], combine: Callable[[np.ndarray], np.ndarray], *,
                         confidence: float = CONFIDENCE, n_resamples: int = 9999, seed: int = 0) -> PairedResult:
    """A score built from several benchmarks' means (a category mean, the Mean): ``differences`` holds each
    benchmark's paired differences b - a; ``combine`` maps the per-benchmark mean differences (last axis) to
    the composite. Interval: items resampled within each benchmark (scipy's multi-sample bootstrap,
    percentile); p-value: sign flips of every item difference (one-sample ``permutation_test``)."""
    differences = [np.asarray(d, dtype=float) for d in differences]
    if not differences or any(len(d) == 0 for d in differences):
        raise ValueError("a composite difference needs at least one item in every benchmark")

    def stratified(*samples, axis=-1):
        return combine(np.stack([np.mean(s, axis=axis) for s in samples], axis=-1))

    delta = float(stratified(*differences))
    flat = np.concatenate(differences)
    if len(flat) < 2 or np.all(flat == flat[0]):
        return PairedResult(delta, delta, delta, 1.0 if delta == 0 else 0.0, len(flat))
    rng = np.random.default_rng(seed)
    if all(len(d) > 1 for d in differences):
        ci = stats.bootstrap(tuple(differences), stratified, paired=False, vectorized=True,
                             confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                             batch=BATCH, rng=rng).confidence_interval
        low, high = float(ci.low), float(ci.high)
    else:  # a benchmark of one item cannot be resampled
        low = high = float("nan")
    bounds = np.cumsum([len(d) for d in differences])[:-1]

    def signed(d, axis=-1):
        return stratified(*np.split(d, bounds, axis=axis), axis=axis)

    test = stats.permutation_test((flat,), signed, permutation_type="samples", vectorized=True,
                                  n_resamples=n_resamples, alternative="two-sided", batch=BATCH, rng=rng)
    return PairedResult(delta, low, high, float(test.pvalue), len(flat))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels); NaN entries stay NaN and are not counted."""
    import gc

    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        # statsmodels' Holm branch calls gc.collect() on every call (0.1-0.6 s with pandas and matplotlib
        # loaded); frozen objects are not traversed, so the collection costs nothing here
        gc.freeze()
        try:
            out[ok] = multipletests(p[ok], method="holm")[1]
        finally:
            gc.unfreeze()
    return out.tolist()
