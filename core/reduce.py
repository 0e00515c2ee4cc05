"""Feature preprocessing before clustering: L2 normalisation and
dimensionality reduction (PCA or UMAP), each with a parameter schema."""

import logging

import numpy as np

from .schema import Param, ParamError, Registry

logger = logging.getLogger(__name__)

REDUCERS = Registry("reduction")

# UMAP's neighbour search is run on at most this many PCA components: it is
# several times faster than on 512-d or 768-d embeddings and keeps the
# neighbourhoods (embeddings of images have low intrinsic dimension)
UMAP_PCA_DIM = 50


def l2_normalize(X):
    """Scales rows to unit L2 norm in place, in chunks so that no full-size
    temporary is made (zero rows stay zero)."""
    for s in range(0, len(X), 65536):
        part = X[s : s + 65536]
        norms = np.sqrt(np.einsum("ij,ij->i", part, part))[:, None]
        np.maximum(norms, 1e-12, out=norms)
        part /= norms
    return X


class Reducer:
    """Base class: ``fit_transform(X) -> Y`` (float32)."""

    name = None
    label = None
    description = None
    params = ()

    def __init__(self, **params):
        self.params_ = REDUCERS.resolve(self.name, params)

    def fit_transform(self, X, progress=None):
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

    def fit_transform(self, X, progress=None):
        p = self.params_
        k = p["n_components"]
        if k > min(X.shape):
            raise ParamError(
                f"pca__n_components={k} must not exceed the number of "
                f"samples or dimensions ({min(X.shape)})"
            )
        return pca(X, k, p["random_state"])


def pca(X, n_components, seed=51):
    """PCA of the rows of ``X`` to ``n_components`` float32 columns."""
    from sklearn.decomposition import PCA as SKPCA

    solver = "randomized" if n_components < 0.8 * min(X.shape) else "full"
    Y = SKPCA(
        n_components, svd_solver=solver, random_state=seed
    ).fit_transform(X)
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
        Param("n_components", int, 10, "Output dimensions.", min=1, max=100),
        Param(
            "n_neighbors",
            int,
            15,
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
        Param("random_state", int, 51, "Seed.", min=0),
    )

    def fit_transform(self, X, progress=None):
        p = self.params_
        return umap(
            X,
            n_components=p["n_components"],
            n_neighbors=p["n_neighbors"],
            min_dist=p["min_dist"],
            metric=p["metric"],
            seed=p["random_state"],
        )


def umap(
    X, n_components, n_neighbors=15, min_dist=0.0, metric="cosine", seed=51
):
    """UMAP of the rows of ``X``, after PCA to at most
    :data:`UMAP_PCA_DIM` dimensions."""
    import umap as umap_

    n = len(X)
    if n <= n_neighbors:
        raise ParamError(
            f"UMAP needs more samples ({n}) than umap__n_neighbors "
            f"({n_neighbors})"
        )
    if n_components >= n - 1:
        raise ParamError(
            f"umap__n_components={n_components} must be smaller than the "
            f"number of samples minus one ({n - 1})"
        )
    if X.shape[1] > UMAP_PCA_DIM and n > UMAP_PCA_DIM:
        if metric == "cosine":
            X = l2_normalize(X.copy())
        X = pca(X, UMAP_PCA_DIM, seed)
    model = umap_.UMAP(
        n_components=n_components,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric=metric,
        random_state=seed,
        n_jobs=1,
        low_memory=True,
    )
    Y = model.fit_transform(X)
    return np.ascontiguousarray(Y, dtype=np.float32)


def preprocess(X, normalize, reduce, reduce_params, progress=None):
    """Normalises and reduces features for clustering.

    Args:
        X: float32 matrix (modified in place when normalising)
        normalize: whether to scale rows to unit L2 norm
        reduce: ``"none"`` or a name in :data:`REDUCERS`
        reduce_params: parameters of the reducer

    Returns:
        the float32 features to cluster
    """
    if normalize:
        X = l2_normalize(X)
    if reduce == "none":
        return X
    reducer = REDUCERS.get(reduce)(**reduce_params)
    logger.info("Reducing %s features with %s", X.shape, reduce)
    return reducer.fit_transform(X, progress=progress)
