"""Feature preprocessing before clustering: L2 normalisation and
dimensionality reduction (PCA or UMAP), each with a parameter schema."""

import logging

import numpy as np

from . import neighbors
from .neighbors import NeighborGraph, l2_normalize
from .schema import Param, ParamError, Registry

logger = logging.getLogger(__name__)

REDUCERS = Registry("reduction")


class Reducer:
    """Base class: ``fit_transform(X) -> Y`` (float32).

    After the fit, ``graph_`` is the :class:`.neighbors.NeighborGraph` the
    reducer computed on the way (a projection of the same data may reuse
    it), or ``None``.
    """

    name = None
    label = None
    description = None
    params = ()
    graph_ = None

    def __init__(self, **params):
        self.params_ = REDUCERS.resolve(self.name, params)

    def fit_transform(self, X, progress=None, knn_neighbors=None):
        """Reduces the rows of ``X``.

        Args:
            X: an ``n x d`` float32 matrix
            progress (None): an optional ``progress(fraction, label=None)``
            knn_neighbors (None): for reducers that build a neighbour graph,
                the neighbours it should keep (at least their own), so that
                a projection needing more can share it
        """
        raise NotImplementedError


@REDUCERS.register
class PCA(Reducer):
    name = "pca"
    label = "PCA"
    description = "Linear projection on the directions of largest variance."
    params = (
        Param("n_components", int, 10, "Output dimensions.", min=1),
        Param("random_state", int, 51, "Seed.", min=0),
    )

    def fit_transform(self, X, progress=None, knn_neighbors=None):
        p = self.params_
        k = p["n_components"]
        if k > min(X.shape):
            raise ParamError(
                f"pca__n_components={k} must not exceed the number of "
                f"samples or dimensions ({min(X.shape)})"
            )
        keep = {}
        Y = pca(X, k, p["random_state"], keep=keep)
        self.transform_ = keep
        return Y


def pca(X, n_components, seed=51, keep=None):
    """PCA of the rows of ``X`` to ``n_components`` float32 columns; the
    fitted ``mean`` and ``components`` (``n_components x d``) go into the
    dict ``keep`` when one is given."""
    from sklearn.decomposition import PCA as SKPCA

    solver = "randomized" if n_components < 0.8 * min(X.shape) else "full"
    model = SKPCA(n_components, svd_solver=solver, random_state=seed)
    Y = model.fit_transform(X)
    if keep is not None:
        keep["mean"] = model.mean_.astype(np.float32)
        keep["components"] = model.components_.astype(np.float32)
    return np.ascontiguousarray(Y, dtype=np.float32)


@REDUCERS.register
class UMAP(Reducer):
    name = "umap"
    label = "UMAP"
    description = (
        "Non-linear reduction that keeps local neighbourhoods; the usual "
        "step before density-based clustering."
    )
    params = (
        Param("n_components", int, 5, "Output dimensions.", min=1, max=100),
        Param(
            "n_neighbors",
            int,
            10,
            "Neighbours that define the local structure.",
            min=2,
            max=200,
        ),
        Param(
            "min_dist",
            float,
            0.0,
            "How tightly points may pack (0 suits clustering).",
            min=0.0,
            max=1.0,
        ),
        Param(
            "metric",
            str,
            "cosine",
            "Distance between embeddings.",
            choices=("cosine", "euclidean"),
        ),
        Param(
            "n_epochs",
            int,
            200,
            "Optimisation epochs (more refine the layout, linearly slower).",
            min=10,
            max=2000,
        ),
        Param(
            "fit_samples",
            int,
            25000,
            "Larger inputs are fitted on this many random samples; the "
            "others are placed among their nearest fitted neighbours. Empty "
            "fits all.",
            min=1000,
            optional=True,
        ),
        Param("random_state", int, 51, "Seed.", min=0),
    )

    def fit_transform(self, X, progress=None, knn_neighbors=None):
        """UMAP of the rows of ``X``; ``graph_`` keeps the neighbour-search
        features, the rows the layout was fitted on and their kNN graph."""
        p = self.params_
        n = len(X)
        if n <= p["n_neighbors"]:
            raise ParamError(
                f"UMAP needs more samples ({n}) than umap__n_neighbors "
                f"({p['n_neighbors']})"
            )
        if p["n_components"] >= n - 1:
            raise ParamError(
                f"umap__n_components={p['n_components']} must be smaller "
                f"than the number of samples minus one ({n - 1})"
            )
        self.transform_ = {}
        features = neighbors.prepare_features(
            X, metric=p["metric"], seed=p["random_state"], keep=self.transform_
        )
        fit = neighbors.fit_subset(n, p["fit_samples"], p["random_state"])
        F = features if fit is None else features[fit]
        knn = neighbors.knn_graph(F, max(p["n_neighbors"], knn_neighbors or 0))
        self.graph_ = NeighborGraph(features, p["metric"], knn, fit)
        Y = neighbors.umap_embed(
            F,
            knn,
            n_components=p["n_components"],
            n_neighbors=p["n_neighbors"],
            min_dist=p["min_dist"],
            n_epochs=p["n_epochs"],
            seed=p["random_state"],
            # the spectral start separates clusters slightly better than
            # the PCA one the 2-D projections use (digits: ARI +0.005)
            init="spectral",
            progress=progress,
        )
        if fit is None:
            return Y
        return neighbors.place_rest(
            features, fit, Y, n_neighbors=p["n_neighbors"]
        )


def preprocess(
    X, normalize, reduce, reduce_params, progress=None, knn_neighbors=None
):
    """Normalises and reduces features for clustering.

    Args:
        X: float32 matrix (modified in place when normalising)
        normalize: whether to scale rows to unit L2 norm
        reduce: ``"none"`` or a name in :data:`REDUCERS`
        reduce_params: parameters of the reducer
        progress (None): an optional ``progress(fraction, label=None)``
        knn_neighbors (None): for UMAP, the neighbours its kNN graph keeps
            (at least its own ``n_neighbors``), for sharing it

    Returns:
        ``(Z, reducer)``: the float32 features to cluster, and the fitted
        reducer (``None`` when ``reduce`` is ``"none"``)
    """
    if normalize:
        X = l2_normalize(X)
    if reduce == "none":
        return X, None
    reducer = REDUCERS.get(reduce)(**reduce_params)
    logger.info("Reducing %s features with %s", X.shape, reduce)
    Z = reducer.fit_transform(X, progress, knn_neighbors=knn_neighbors)
    return Z, reducer
