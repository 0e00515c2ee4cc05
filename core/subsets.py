"""Balanced subsets: ``n`` samples spread across the clusters of a run.

Each cluster gets an equal share of ``n``, capped by its size; what a small
cluster cannot take is shared again among the others (:func:`allocate`).
Within a cluster, members are taken in the order of one of
:data:`SUBSET_ORDERS`: the most typical first, spread out (farthest-point
sampling from the most typical), or at random. Optionally the balance goes
one level further down (``sub_clusters``): each cluster is split by k-means
in the embeddings and its quota shared out among the parts the same way,
so that a minority group inside a cluster is not swamped by the majority
(hierarchical balanced sampling, as in Vo et al. 2024, "Automatic data
curation for self-supervised learning: a clustering-based approach").
"""

import numpy as np

from .kmeans import kmeans
from .schema import ParamError, Registry

SUBSET_ORDERS = Registry("subset order")


def allocate(sizes, n):
    """How many samples each cluster gives: equal shares of ``n`` capped
    by the sizes, the remainder shared again among the clusters that have
    more; the last few (fewer than the open clusters) go to the largest.

    Args:
        sizes: the number of eligible samples per cluster
        n: the total, at most ``sum(sizes)``

    Returns:
        an int64 array of quotas, ``quota <= size``, summing to ``n``
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if n > sizes.sum():
        raise ParamError(f"n={n} is more than the {sizes.sum()} samples")
    quota = np.zeros(len(sizes), dtype=np.int64)
    left = int(n)
    while left > 0:
        open_ = np.flatnonzero(quota < sizes)
        share = left // len(open_)
        if share == 0:
            # fewer left than open clusters: one more each to the largest
            room = sizes[open_] - quota[open_]
            order = open_[np.lexsort((open_, -room))][:left]
            quota[order] += 1
            break
        add = np.minimum(share, sizes[open_] - quota[open_])
        quota[open_] += add
        left -= int(add.sum())
    return quota


class SubsetOrder:
    """The order in which a cluster's members are taken:
    ``order(typicality, features, rng)`` -> member positions."""

    name = label = description = None
    params = ()
    needs_features = False

    def order(self, typicality, features, rng, m):
        """The first ``m`` positions (of ``len(typicality)`` members)."""
        raise NotImplementedError


@SUBSET_ORDERS.register
class Typical(SubsetOrder):
    name = "typical"
    label = "Most typical first"
    description = (
        "The members closest to their cluster's centre (by the run's score)"
    )

    def order(self, typicality, features, rng, m):
        return np.argsort(-typicality, kind="stable")[:m]


@SUBSET_ORDERS.register
class Spread(SubsetOrder):
    name = "spread"
    label = "Spread out"
    description = (
        "Farthest-point sampling in the embeddings, from the most typical "
        "member: covers the cluster's variety"
    )
    needs_features = True

    def order(self, typicality, features, rng, m):
        return farthest_points(features, m, int(np.argmax(typicality)))


@SUBSET_ORDERS.register
class Random(SubsetOrder):
    name = "random"
    label = "At random"
    description = "Drawn with the seed"

    def order(self, typicality, features, rng, m):
        return rng.permutation(len(typicality))[:m]


def farthest_points(X, m, start=0):
    """``m`` distinct rows of ``X`` by farthest-point sampling from
    ``start``: each next row is the one farthest (Euclidean) from those
    taken; among identical rows, the first not taken."""
    n = len(X)
    m = min(m, n)
    out = np.empty(m, dtype=np.int64)
    if m == 0:
        return out
    out[0] = start
    sq = np.einsum("ij,ij->i", X, X)
    dist = sq + sq[start] - 2.0 * (X @ X[start])
    dist[start] = -np.inf  # taken rows are never farthest
    for k in range(1, m):
        i = int(np.argmax(dist))
        out[k] = i
        dist = np.minimum(dist, sq + sq[i] - 2.0 * (X @ X[i]))
        dist[i] = -np.inf
    return out


def select(
    clusters,
    n,
    order="typical",
    typicality=None,
    features=None,
    seed=51,
    sub_clusters=1,
):
    """``n`` rows spread across clusters.

    Args:
        clusters: an int array, the cluster of each eligible row
        n: how many rows to take (at most the rows)
        order ("typical"): a name of :data:`SUBSET_ORDERS`
        typicality (None): higher is more typical, per row (zeros if
            ``None``)
        features (None): an ``n_rows x d`` array, for orders that need it
            and for ``sub_clusters``
        seed (51): seed of the random choices and of the k-means
        sub_clusters (1): above 1, a cluster that gives some but not all
            of its rows (and at least 2) is split into this many parts by
            k-means on ``features``, and its quota is shared among them as
            among the clusters (:func:`allocate`); ``order`` applies
            within each part

    Returns:
        ``(rows, per_cluster)``: the chosen rows (cluster by cluster) and
        ``{cluster: (eligible, taken, parts)}``, where ``parts`` is a list
        of ``(eligible, taken)`` per part of a split cluster, else ``None``
    """
    cls = SUBSET_ORDERS.get(order)
    _check_sub_clusters(sub_clusters)
    if (cls.needs_features or sub_clusters > 1) and features is None:
        why = f"Order '{order}'" if cls.needs_features else "sub_clusters"
        raise ParamError(f"{why} needs the embeddings")
    clusters = np.asarray(clusters)
    typicality = np.zeros(len(clusters)) if typicality is None else typicality
    ids, inverse = np.unique(clusters, return_inverse=True)
    members = np.split(
        np.argsort(inverse, kind="stable"),
        np.cumsum(np.bincount(inverse, minlength=len(ids)))[:-1],
    )
    quota = allocate([len(m) for m in members], n)
    rng = np.random.default_rng(seed)
    chosen, per_cluster = [], {}
    for cid, rows, q in zip(ids, members, quota):
        q = int(q)
        parts = [rows]
        if sub_clusters > 1 and 2 <= q < len(rows):
            parts = split_cluster(features[rows], sub_clusters, seed)
            parts = [rows[p] for p in parts]
        part_quota = allocate([len(p) for p in parts], q)
        for part, pq in zip(parts, part_quota):
            f = None if features is None else features[part]
            at = cls().order(typicality[part], f, rng, int(pq))
            chosen.append(part[at])
        split = None
        if len(parts) > 1:
            split = [(len(p), int(t)) for p, t in zip(parts, part_quota)]
        per_cluster[cid.item()] = (len(rows), q, split)
    rows = np.concatenate(chosen) if chosen else np.empty(0, np.int64)
    return rows, per_cluster


def _check_sub_clusters(k):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ParamError(f"sub_clusters must be an integer >= 1, not {k!r}")


def split_cluster(X, k, seed=51):
    """The rows of ``X`` in at most ``k`` parts by k-means (3 restarts):
    a list of index arrays, largest first, without empty parts."""
    k = min(int(k), len(X))
    if k < 2:
        return [np.arange(len(X))]
    X = np.ascontiguousarray(X, dtype=np.float32)
    _, labels, _ = kmeans(X, k, 25, seed, n_init=3)
    sizes = np.bincount(labels, minlength=k)
    return [
        np.flatnonzero(labels == j)
        for j in np.argsort(-sizes, kind="stable")
        if sizes[j]
    ]
