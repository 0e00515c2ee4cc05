"""Summaries and quality metrics of a clustering, on bounded samples."""

import numpy as np

# The cluster id of noise: as an integer label, and as stored in a field
NOISE = -1
NOISE_ID = str(NOISE)


def cluster_ids(labels):
    """The distinct labels, noise first, then by size (largest first)."""
    values, counts = np.unique(labels, return_counts=True)
    order = sorted(
        range(len(values)), key=lambda i: (values[i] != NOISE, -counts[i])
    )
    return values[order], counts[order]


def _positions(labels, ids):
    """For each label, its position in ``ids`` (-1 if absent)."""
    lookup = np.full(int(max(labels.max(), ids.max())) + 2, -1)
    lookup[ids + 1] = np.arange(len(ids))
    return lookup[labels + 1]


def centroids(X, labels, ids):
    """Mean row of ``X`` for each label in ``ids`` (k x d float32)."""
    import scipy.sparse as sp

    which = _positions(labels, ids)
    keep = np.flatnonzero(which >= 0)
    onehot = sp.csr_matrix(
        (np.ones(len(keep), dtype=np.float32), (which[keep], keep)),
        shape=(len(ids), len(labels)),
    )
    sums = onehot @ X
    counts = np.asarray(onehot.sum(axis=1)).ravel()
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def distances_to_centroids(X, labels, ids, C, chunk=65536):
    """Euclidean distance of each row to its cluster's centroid (NaN for
    noise), computed in chunks to bound memory.

    Args:
        X: n x d features
        labels: n labels
        ids: the labels that have a centroid, in the order of the rows of
            ``C``
        C: centroids
    """
    which = _positions(labels, ids)
    which[labels == NOISE] = -1
    out = np.full(len(X), np.nan, dtype=np.float32)
    for s in range(0, len(X), chunk):
        w = which[s : s + chunk]
        ok = w >= 0
        diff = X[s : s + chunk][ok] - C[w[ok]]
        part = out[s : s + chunk]
        part[ok] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def typical_first(labels, score, higher_is_typical, ids, top=20):
    """Indices of the ``top`` most typical members of each cluster.

    Typical means the highest score when ``higher_is_typical`` (strength,
    probability), else the smallest (distance).

    Returns:
        a dict ``label -> int array of row indices``
    """
    key = -score if higher_is_typical else score
    key = np.where(np.isnan(key), np.inf, key)
    order = np.lexsort((key, labels))
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, ids, side="left")
    out = {}
    for v, s in zip(ids, starts):
        e = s
        stop = min(len(order), s + top)
        while e < stop and sorted_labels[e] == v:
            e += 1
        out[v] = order[s:e]
    return out


def quality(X, labels, seed=51, silhouette_size=3000, other_size=20000):
    """Quality metrics on bounded random samples of the non-noise rows.

    Returns:
        a dict with ``silhouette``, ``davies_bouldin``,
        ``calinski_harabasz`` (``None`` where fewer than 2 clusters) and
        ``noise_fraction``
    """
    from sklearn.metrics import (
        calinski_harabasz_score,
        davies_bouldin_score,
        silhouette_score,
    )

    n = len(labels)
    keep = np.flatnonzero(labels != NOISE)
    out = {
        "noise_fraction": float(1 - len(keep) / n) if n else 0.0,
        "silhouette": None,
        "davies_bouldin": None,
        "calinski_harabasz": None,
        "metric_sample_size": int(min(len(keep), other_size)),
    }
    if len(np.unique(labels[keep])) < 2:
        return out
    rng = np.random.default_rng(seed)

    def sample(size):
        idx = keep
        if len(idx) > size:
            idx = np.sort(rng.choice(idx, size, replace=False))
        return X[idx], labels[idx]

    Xs, ls = sample(silhouette_size)
    if 1 < len(np.unique(ls)) < len(ls):
        out["silhouette"] = float(silhouette_score(Xs, ls))
    Xs, ls = sample(other_size)
    if 1 < len(np.unique(ls)) < len(ls):
        out["davies_bouldin"] = float(davies_bouldin_score(Xs, ls))
        out["calinski_harabasz"] = float(calinski_harabasz_score(Xs, ls))
    return out
