"""Per-cluster summaries of a clustering: sizes, centroids, typical members
and mean scores, how they combine when clusters are merged, and the most
frequent cluster ids for displays that show a bounded number of
categories."""

import numpy as np

from . import metrics
from .methods import SCORE_KINDS

# Typical members kept per cluster
REPRESENTATIVES = 20

# The value that stands for every cluster not among the most frequent
OTHER_CLUSTERS = "other"


def summarize(X, Z, labels, fitted):
    """Summarises a fitted clustering.

    Args:
        X: the ``n x d`` float32 embeddings (centroids are given in their
            space)
        Z: the features that were clustered (``X`` itself, or a reduction)
        labels: the ``n`` integer labels (``-1`` for noise)
        fitted: the fitted :class:`core.methods.ClusteringMethod`

    Returns:
        a dict with ``clusters`` (cluster id string -> ``size``,
        ``centroid`` (a list, ``None`` for noise), ``representatives`` (row
        indices of the most typical members) and ``score_mean``),
        ``metrics`` (see :func:`core.metrics.quality`) and ``scores`` (the
        per-sample float32 scores of ``fitted.score_kind``; NaN for noise
        where the kind is a distance)
    """
    cluster_ids, counts = metrics.cluster_ids(labels)
    real = cluster_ids[cluster_ids != metrics.NOISE]
    C_z = getattr(fitted, "cluster_centers_", None)
    if C_z is None or len(C_z) != len(real) or Z is not X:
        C_z = metrics.centroids(Z, labels, real)
    else:
        C_z = C_z[real]
    scores = fitted.scores_
    if scores is None:
        scores = metrics.distances_to_centroids(Z, labels, real, C_z)
    C_x = C_z if Z is X else metrics.centroids(X, labels, real)
    higher = SCORE_KINDS[fitted.score_kind].higher_is_typical
    typical = metrics.typical_first(
        labels, scores, higher, cluster_ids, top=REPRESENTATIVES
    )

    centroid_of = dict(zip(real.tolist(), C_x))
    means = _mean_scores(labels, scores)
    clusters = {}
    for cid, size in zip(cluster_ids.tolist(), counts.tolist()):
        centroid = centroid_of.get(cid)
        clusters[str(cid)] = dict(
            size=int(size),
            centroid=None if centroid is None else centroid.tolist(),
            representatives=typical[cid].tolist(),
            score_mean=means.get(cid),
        )
    return dict(
        clusters=clusters,
        metrics=metrics.quality(Z, labels),
        scores=scores,
    )


def _mean_scores(labels, scores):
    """The mean non-NaN score of each label, with one bincount."""
    scored = ~np.isnan(scores)
    offset = labels + 1  # noise (-1) becomes bin 0
    sums = np.bincount(offset[scored], weights=scores[scored])
    counts = np.bincount(offset[scored], minlength=len(sums))
    return {
        int(b - 1): float(sums[b] / counts[b]) for b in np.flatnonzero(counts)
    }


def merge(parts):
    """The summary of clusters merged into one.

    Args:
        parts: the merged clusters' summaries (dicts with ``size`` and,
            where known, ``centroid``, ``score_mean`` and ``label``), the
            receiving cluster first

    Returns:
        a dict with the merged ``size``, size-weighted ``centroid`` (the
        first part's when some part has none), size-weighted ``score_mean``
        and the first ``label`` any part has
    """
    sizes = np.array([p.get("size", 0) for p in parts], dtype=np.float64)
    size = int(sizes.sum())
    centroids = [p.get("centroid") for p in parts]
    if all(c is not None for c in centroids) and size > 0:
        C = np.asarray(centroids, dtype=np.float32)
        w = (sizes / sizes.sum()).astype(np.float32)
        centroid = (w[:, None] * C).sum(axis=0, dtype=np.float32).tolist()
    else:
        centroid = parts[0].get("centroid")
    scored = [
        (p["score_mean"], s)
        for p, s in zip(parts, sizes)
        if p.get("score_mean") is not None and s > 0
    ]
    score_mean = None
    if scored:
        total = sum(s for _, s in scored)
        score_mean = float(sum(m * s for m, s in scored) / total)
    label = next((p["label"] for p in parts if p.get("label")), None)
    return dict(
        size=size, centroid=centroid, score_mean=score_mean, label=label
    )


def top_values(labels, keep):
    """Keeps the ``keep`` most frequent values of ``labels`` and replaces
    the others by :data:`OTHER_CLUSTERS` (``None`` stays ``None``).

    Args:
        labels: a sequence of cluster id strings (or ``None``)
        keep: how many values to keep; ties go to the smaller id

    Returns:
        a list aligned with ``labels``
    """
    values, counts = np.unique(
        np.array([v for v in labels if v is not None], dtype=str),
        return_counts=True,
    )
    order = sorted(
        range(len(values)),
        key=lambda i: (-counts[i], _cluster_sort_key(values[i])),
    )
    kept = {str(values[i]) for i in order[:keep]}
    return [v if v is None or v in kept else OTHER_CLUSTERS for v in labels]


def _cluster_sort_key(value):
    try:
        return (0, int(value), "")
    except ValueError:
        return (1, 0, str(value))
