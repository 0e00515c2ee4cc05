"""Outlier scores from nearest-neighbour distances: higher is more unusual.

Neighbours come as the ``(indices, distances)`` of
:func:`.neighbors.knn_graph` (each row's first neighbour is itself). Scores
are scaled so that 1 is a typical sample.
"""

import numpy as np

from .schema import Param, ParamError, Registry

OUTLIER_SCORES = Registry("outlier score")

_K = Param(
    "n_neighbors", int, 20, "Neighbours whose distances count.", min=1, max=200
)


class OutlierScore:
    """An outlier score: ``fit(knn)`` sets ``scores_`` (one per row, higher
    is more unusual, 1 typical)."""

    name = None
    label = None
    description = None
    params = (_K,)

    def __init__(self, **params):
        self.params_ = OUTLIER_SCORES.resolve(self.name, params)

    def fit(self, knn):
        """Scores every row of the graph ``knn``; returns self."""
        k = self.params_["n_neighbors"]
        if knn[1].shape[1] < 2:
            raise ParamError("Outlier scores need at least one neighbour")
        D = knn[1][:, 1 : k + 1].astype(np.float64)
        self.scores_ = self._score(knn[0][:, 1 : k + 1], D)
        return self

    def _score(self, I, D):
        raise NotImplementedError


@OUTLIER_SCORES.register
class RelativeDistance(OutlierScore):
    """The mean distance to the nearest neighbours relative both to the
    typical sample's (far from everything) and to the neighbours' own
    (sparser than its surroundings): the product of :class:`KnnDistance`
    and :class:`LocalRatio`. On digits with corrupted images mixed in it
    ranks them better than either alone, and than scikit-learn's
    LocalOutlierFactor and IsolationForest (see BENCHMARKS.md)."""

    name = "relative_distance"
    label = "Distance relative to the typical and to the neighbours"
    description = (
        "Mean distance to the nearest neighbours, relative to the typical "
        "sample's and to the neighbours' own: high for samples far from "
        "everything and for samples alone at the edge of a dense group"
    )

    def _score(self, I, D):
        return KnnDistance._score(self, I, D) * LocalRatio._score(self, I, D)


@OUTLIER_SCORES.register
class KnnDistance(OutlierScore):
    """The mean distance to the nearest neighbours (the inverse of the
    density around the sample), over its median across the samples."""

    name = "knn_distance"
    label = "Distance to nearest neighbours"
    description = (
        "Mean distance to the nearest neighbours, relative to the typical "
        "sample's: high where the data around a sample is sparse"
    )

    def _score(self, I, D):
        mean = D.mean(axis=1)
        return (mean / max(np.median(mean), 1e-12)).astype(np.float32)


@OUTLIER_SCORES.register
class LocalRatio(OutlierScore):
    """The mean distance to the nearest neighbours over the same distance
    of those neighbours (a simplified local outlier factor): a sample in a
    sparse area among dense ones scores high, a sparse cluster does not."""

    name = "local_ratio"
    label = "Density relative to the neighbours'"
    description = (
        "Mean distance to the nearest neighbours over theirs: finds "
        "samples at the edge of dense groups, misses groups of outliers"
    )

    def _score(self, I, D):
        mean = D.mean(axis=1)
        return (mean / np.maximum(mean[I].mean(axis=1), 1e-12)).astype(
            np.float32
        )


def top_n(scores, n):
    """The indices of the ``n`` highest scores, highest first (``nan``
    last)."""
    s = np.where(np.isnan(scores), -np.inf, scores)
    n = min(n, len(s))
    part = np.argpartition(-s, n - 1)[:n] if n else np.array([], int)
    return part[np.argsort(-s[part], kind="stable")]
