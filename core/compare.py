"""Comparing two clusterings of the same samples, and the stability of a
clustering under resampling (Hennig's cluster-wise bootstrap, as in R's
``fpc::clusterboot``).

Both rest on the Jaccard overlap ``|A & B| / |A | B|`` between the member
sets of two clusters, computed for every pair at once from a contingency
table.
"""

import numpy as np

from .metrics import NOISE

# A cluster is "kept" when its best match overlaps it at least this much
KEPT_JACCARD = 0.5

# A cluster counts as a part of another when at least this share of it
# lies in the other
PART_SHARE = 0.5

# Stability (mean best-match Jaccard) above which a cluster is "stable",
# and below which it is "dissolving" (Hennig 2007)
STABLE = 0.85
DISSOLVING = 0.6

VERDICTS = ("kept", "split", "merged", "new", "gone")


def codes(values):
    """``(unique values, integer codes)`` of a sequence of ids."""
    uniques, inverse = np.unique(np.asarray(values), return_inverse=True)
    return uniques, inverse.astype(np.int64)


def contingency(a, b, na, nb):
    """The ``na x nb`` table of how many rows have code ``i`` in ``a`` and
    ``j`` in ``b``."""
    return np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb)


def jaccard(K):
    """The Jaccard overlap of every pair of clusters from their
    contingency table ``K``."""
    rows = K.sum(axis=1)[:, None]
    cols = K.sum(axis=0)[None, :]
    union = rows + cols - K
    return np.where(union > 0, K / np.maximum(union, 1), 0.0)


def _ari(K):
    """The adjusted Rand index from a contingency table."""

    def pairs(x):
        x = x.astype(np.float64)
        return (x * (x - 1) / 2).sum()

    n = K.sum()
    index = pairs(K)
    a, b = pairs(K.sum(axis=1)), pairs(K.sum(axis=0))
    expected = a * b / max(n * (n - 1) / 2, 1)
    top = (a + b) / 2
    if top == expected:
        return 1.0
    return float((index - expected) / (top - expected))


def compare(labels_a, labels_b):
    """Compares two clusterings of the same rows.

    Args:
        labels_a: the cluster ids (strings) of the rows in the first run
        labels_b: those in the second, aligned with ``labels_a``

    Returns:
        a dict: ``ari``, ``ami`` (noise counts as one cluster in both),
        ``n_samples``, ``clusters`` (one row per cluster of either run,
        noise excluded: ``run`` ``"a"`` or ``"b"``, ``id``, ``size``,
        ``best_match``, ``jaccard``, ``verdict``), ``events`` (``verdict``
        with the ``a`` and ``b`` cluster ids involved) and ``flows``
        (``a``, ``b``, ``count`` for every pair that shares samples,
        largest first)
    """
    from sklearn.metrics import adjusted_mutual_info_score

    ua, a = codes(labels_a)
    ub, b = codes(labels_b)
    K = contingency(a, b, len(ua), len(ub))
    ami = float(adjusted_mutual_info_score(a, b))
    noise_a = np.array([str(v) == str(NOISE) for v in ua])
    noise_b = np.array([str(v) == str(NOISE) for v in ub])
    events, verdict_a, verdict_b = verdicts(K, noise_a, noise_b)
    J = jaccard(K)
    rows = []
    for run, ids, JJ, noise, verdict, other in (
        ("a", ua, J, noise_a, verdict_a, ub),
        ("b", ub, J.T, noise_b, verdict_b, ua),
    ):
        sizes = (K.sum(axis=1) if run == "a" else K.sum(axis=0)).tolist()
        for i in np.flatnonzero(~noise):
            j = int(JJ[i].argmax())
            rows.append(
                dict(
                    run=run,
                    id=str(ids[i]),
                    size=int(sizes[i]),
                    best_match=str(other[j]),
                    jaccard=float(JJ[i, j]),
                    verdict=verdict[i],
                )
            )
    ia, ib = np.nonzero(K)
    order = np.argsort(-K[ia, ib], kind="stable")
    flows = [
        dict(a=str(ua[ia[t]]), b=str(ub[ib[t]]), count=int(K[ia[t], ib[t]]))
        for t in order
    ]
    named = [
        dict(
            verdict=e["verdict"],
            a=[str(ua[i]) for i in e["a"]],
            b=[str(ub[j]) for j in e["b"]],
        )
        for e in events
    ]
    return dict(
        ari=_ari(K),
        ami=ami,
        n_samples=int(len(a)),
        clusters=rows,
        events=named,
        flows=flows,
    )


def verdicts(K, noise_a, noise_b):
    """Verdicts on the clusters of two runs from their contingency table.

    Noise is left out. A cluster of the second run that holds most
    (:data:`PART_SHARE`) of two or more clusters of the first *merged*
    them; a cluster of the first whose members make up most of two or more
    clusters of the second was *split*. Of the others, mutual best matches
    with a Jaccard of at least :data:`KEPT_JACCARD` are *kept*; clusters of
    the first run left over are *gone*, those of the second *new*.

    Returns:
        ``(events, verdict per cluster of a, verdict per cluster of b)``;
        each event a dict with ``verdict`` and the row indices ``a``, ``b``
    """
    K = K.astype(np.float64)
    K[noise_a, :] = 0
    K[:, noise_b] = 0
    size_a = np.maximum(K.sum(axis=1), 1)
    size_b = np.maximum(K.sum(axis=0), 1)
    into = K / size_a[:, None] >= PART_SHARE  # most of a lies in b
    from_ = K / size_b[None, :] >= PART_SHARE  # most of b came from a
    va = [None] * len(K)
    vb = [None] * K.shape[1]
    events = []
    for j in np.flatnonzero(into.sum(axis=0) >= 2):
        parts = [int(i) for i in np.flatnonzero(into[:, j]) if va[i] is None]
        if len(parts) >= 2 and vb[j] is None:
            events.append(dict(verdict="merged", a=parts, b=[int(j)]))
            for i in parts:
                va[i] = "merged"
            vb[j] = "merged"
    for i in np.flatnonzero(from_.sum(axis=1) >= 2):
        parts = [int(j) for j in np.flatnonzero(from_[i]) if vb[j] is None]
        if len(parts) >= 2 and va[i] is None:
            events.append(dict(verdict="split", a=[int(i)], b=parts))
            for j in parts:
                vb[j] = "split"
            va[i] = "split"
    J = jaccard(K)
    for i in range(len(K)):
        if va[i] is not None or noise_a[i] or not J.shape[1]:
            continue
        j = int(J[i].argmax())
        mutual = int(J[:, j].argmax()) == i
        if mutual and J[i, j] >= KEPT_JACCARD and vb[j] is None:
            events.append(dict(verdict="kept", a=[i], b=[j]))
            va[i] = vb[j] = "kept"
    for i in range(len(K)):
        if va[i] is None and not noise_a[i]:
            events.append(dict(verdict="gone", a=[i], b=[]))
            va[i] = "gone"
    for j in range(K.shape[1]):
        if vb[j] is None and not noise_b[j]:
            events.append(dict(verdict="new", a=[], b=[j]))
            vb[j] = "new"
    return events, va, vb


def stability(fit, labels, n_resamples, fraction=0.5, seed=51):
    """Cluster-wise stability by subsampling (``fpc::clusterboot`` with
    ``bootmethod="subset"``).

    The clustering is repeated ``n_resamples`` times on random subsets of
    ``fraction`` of the rows, each with another seed; for every original
    cluster, its members in the subset are matched with the subset
    clustering's clusters, and its stability is the mean over resamples of
    the best Jaccard overlap (0 when none of its members was drawn).

    Args:
        fit: a callable ``fit(rows, seed) -> labels`` that clusters the
            rows of the run's features with the given indices
        labels: the ``n`` integer labels of the full clustering
        n_resamples: how many subsets
        fraction (0.5): the share of rows in each subset
        seed (51): seed of the subsets

    Returns:
        ``{label: mean best Jaccard}`` for every non-noise label
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    real = np.unique(labels[labels != NOISE])
    position = {int(c): i for i, c in enumerate(real)}
    totals = np.zeros(len(real))
    size = max(2, int(round(fraction * n)))
    for r in range(n_resamples):
        rows = np.sort(rng.choice(n, size, replace=False))
        new = np.asarray(fit(rows, seed + 1 + r), dtype=np.int64)
        old = labels[rows]
        keep = old != NOISE
        ua, a = codes(old[keep])
        ub, b = codes(new[keep])
        K = contingency(a, b, len(ua), len(ub)).astype(np.float64)
        # the subset's noise is no cluster to match, but its rows count
        # in the original clusters' sizes
        K[:, ub == NOISE] = 0
        rows_a = np.bincount(a, minlength=len(ua))[:, None]
        size_of = dict(zip(*np.unique(new, return_counts=True)))
        sizes_b = np.array(
            [0 if v == NOISE else size_of.get(v, 0) for v in ub]
        )[None, :]
        union = rows_a + sizes_b - K
        J = np.where(union > 0, K / np.maximum(union, 1), 0)
        best = J.max(axis=1) if J.shape[1] else np.zeros(len(ua))
        for c, value in zip(ua, best):
            totals[position[int(c)]] += value
    return {int(c): float(t / n_resamples) for c, t in zip(real, totals)}


def stability_word(value):
    """``"stable"``, ``"dissolving"`` or ``"in between"``."""
    if value is None:
        return None
    if value > STABLE:
        return "stable"
    if value < DISSOLVING:
        return "dissolving"
    return "in between"
