"""Clustering methods, one class per method.

Each class declares its parameters as a schema (see :mod:`.schema`) and
follows scikit-learn's conventions: ``__init__`` stores validated
parameters, ``fit(X)`` returns ``self`` and sets ``labels_`` (int array,
``-1`` for noise) and ``scores_``: the per-sample score the method declares
in ``score_kind`` (see :data:`SCORE_KINDS`), or ``None`` for methods whose
score, the distance to the cluster centre, is computed after the fit.

Adding a method means adding one class here, decorated with
``@METHODS.register``.
"""

import dataclasses
import logging

import numpy as np

from .kmeans import kmeans
from .schema import Param, ParamError, Registry

logger = logging.getLogger(__name__)

METHODS = Registry("clustering method")


@dataclasses.dataclass(frozen=True)
class ScoreKind:
    """What a method's per-sample score measures.

    Args:
        higher_is_typical: whether a larger score marks a more typical
            member of its cluster
        cohesion: how the mean score of a cluster reads, in words
    """

    higher_is_typical: bool
    cohesion: str


# Per-sample scores, by the name a method declares in ``score_kind``
SCORE_KINDS = {
    "distance": ScoreKind(
        False, "mean distance to the cluster centre (smaller is tighter)"
    ),
    "strength": ScoreKind(
        True, "mean membership strength (larger is more certain)"
    ),
    "probability": ScoreKind(
        True, "mean membership probability (larger is more certain)"
    ),
}

_SEED = Param(
    "random_state", int, 51, "Seed of the random number generator.", min=0
)


def _k_param(help_text="Number of clusters; empty picks k by silhouette."):
    return Param("n_clusters", int, None, help_text, min=2, optional=True)


# Bounds of the automatic choice of k, shared by every method that has it
AUTO_K_PARAMS = (
    Param(
        "k_min", int, 2, "Smallest k tried when n_clusters is empty.", min=2
    ),
    Param(
        "k_max", int, 30, "Largest k tried when n_clusters is empty.", min=2
    ),
)


class ClusteringMethod:
    """Base class of the clustering methods.

    Class attributes:
        name: the registry name, used as the ``<name>__<param>`` prefix
        label: a human name for forms
        description: one sentence for forms and docs
        params: the parameter schema
        density_based: whether the method finds clusters of arbitrary shape
            and labels noise; such methods reduce features with UMAP first
            by default
        k_param: the name of the parameter that sets the number of clusters,
            if the method has one that may be chosen automatically
        max_samples: the largest input the method handles (memory grows
            quadratically for some), or ``None``
        assigns: how samples the fit did not see are assigned (see
            :mod:`.assign`): ``"centroids"`` (nearest centre), ``"model"``
            (the fitted model's own prediction), ``"hdbscan"``
            (approximate prediction on the condensed tree) or
            ``"core_samples"`` (nearest core sample within ``eps``)
        score_kind: the per-sample score the method produces, a key of
            :data:`SCORE_KINDS`. ``"distance"`` (to the cluster centre) is
            computed for the method after the fit; a method that declares
            another kind sets it in ``scores_``
    """

    name = None
    label = None
    description = None
    params = ()
    density_based = False
    k_param = None
    max_samples = None
    score_kind = "distance"
    assigns = "centroids"

    def __init__(self, **params):
        self.params_ = METHODS.resolve(self.name, params)

    def check_input(self, X):
        """Raises a :class:`ParamError` if ``X`` cannot be clustered."""
        n = len(X)
        if n < 2:
            raise ParamError(
                f"Clustering needs at least 2 samples; the input has {n}"
            )
        if self.max_samples is not None and n > self.max_samples:
            raise ParamError(
                f"Method '{self.name}' needs memory quadratic in the number "
                f"of samples and supports at most {self.max_samples:,}; the "
                f"input has {n:,}. Use kmeans, minibatch_kmeans, birch or "
                f"hdbscan, or cluster a smaller view"
            )
        k = self.params_.get(self.k_param) if self.k_param else None
        if k is not None and k > n:
            raise ParamError(
                f"{self.name}__{self.k_param}={k} is larger than the number "
                f"of samples ({n})"
            )

    def fit(self, X):
        """Clusters the rows of ``X`` (float32, n x d); returns ``self``."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        self.check_input(X)
        labels, scores = self._fit(X)
        self.labels_ = np.asarray(labels, dtype=np.int64)
        self.scores_ = None
        if scores is not None:
            self.scores_ = np.asarray(scores, dtype=np.float32)
        return self

    def used_params(self):
        """The parameters the fit actually used: automatic values filled
        in, and the bounds of the automatic choice of k dropped (they do
        nothing when k is given)."""
        auto = {p.name for p in AUTO_K_PARAMS}
        return {k: v for k, v in self.params_.items() if k not in auto}

    def _fit(self, X):
        """Returns ``(labels, scores)``: the per-sample scores of the
        method's ``score_kind``, or ``None`` for ``"distance"``."""
        raise NotImplementedError


@METHODS.register
class KMeans(ClusteringMethod):
    """k-means: k-means++ seeding on a sample, then Lloyd iterations with
    faiss over all points (scikit-learn where faiss is not installed)."""

    name = "kmeans"
    label = "K-means"
    description = (
        "Partitions into k compact clusters around centroids. Fast and "
        "scalable to millions of samples."
    )
    params = (
        _k_param(),
        Param("max_iter", int, 25, "Lloyd iterations.", min=1, max=1000),
        Param(
            "n_init",
            int,
            3,
            "Restarts with different seeds, each on a sample; the one "
            "that fits a fixed sample best wins.",
            min=1,
            max=50,
        ),
        _SEED,
    ) + AUTO_K_PARAMS
    k_param = "n_clusters"

    def _fit(self, X):
        p = self.params_
        centroids, labels, _ = kmeans(
            X,
            p["n_clusters"],
            p["max_iter"],
            p["random_state"],
            n_init=p["n_init"],
        )
        self.cluster_centers_ = centroids
        return labels, None


@METHODS.register
class MiniBatchKMeans(ClusteringMethod):
    name = "minibatch_kmeans"
    label = "Mini-batch k-means"
    description = (
        "k-means on random mini-batches: lower memory, slightly less "
        "accurate."
    )
    params = (
        _k_param(),
        Param("batch_size", int, 4096, "Samples per mini-batch.", min=16),
        Param("max_iter", int, 100, "Passes over the data.", min=1),
        _SEED,
    ) + AUTO_K_PARAMS
    k_param = "n_clusters"

    def _fit(self, X):
        from sklearn.cluster import MiniBatchKMeans as SKMiniBatchKMeans

        p = self.params_
        km = SKMiniBatchKMeans(
            n_clusters=p["n_clusters"],
            batch_size=p["batch_size"],
            max_iter=p["max_iter"],
            n_init=1,
            random_state=p["random_state"],
        ).fit(X)
        self.cluster_centers_ = km.cluster_centers_.astype(np.float32)
        return km.labels_, None


@METHODS.register
class Birch(ClusteringMethod):
    name = "birch"
    label = "BIRCH"
    description = (
        "Builds a tree of subclusters in one pass, then groups them into "
        "n_clusters. Memory-light on large inputs."
    )
    params = (
        _k_param(),
        Param(
            "threshold",
            float,
            0.3,
            "Largest radius of a subcluster (on L2-normalised vectors, "
            "distances lie in [0, 2]).",
            min=1e-6,
        ),
        Param(
            "branching_factor",
            int,
            50,
            "Most subclusters in a tree node.",
            min=2,
        ),
    ) + AUTO_K_PARAMS
    k_param = "n_clusters"
    assigns = "model"

    def _fit(self, X):
        from sklearn.cluster import Birch as SKBirch

        p = self.params_
        model = SKBirch(
            n_clusters=p["n_clusters"],
            threshold=p["threshold"],
            branching_factor=p["branching_factor"],
        ).fit(X)
        self.model_ = model
        return model.labels_, None


@METHODS.register
class Agglomerative(ClusteringMethod):
    name = "agglomerative"
    label = "Agglomerative"
    description = (
        "Bottom-up hierarchical clustering. Memory grows with the square "
        "of the number of samples."
    )
    params = (
        _k_param(),
        Param(
            "linkage",
            str,
            "ward",
            "How the distance between clusters is measured.",
            choices=("ward", "complete", "average", "single"),
        ),
        Param(
            "metric",
            str,
            "euclidean",
            "Distance between samples (ward needs euclidean).",
            choices=("euclidean", "cosine", "manhattan"),
        ),
    ) + AUTO_K_PARAMS
    k_param = "n_clusters"
    max_samples = 50000

    def __init__(self, **params):
        super().__init__(**params)
        p = self.params_
        if p["linkage"] == "ward" and p["metric"] != "euclidean":
            raise ParamError(
                "agglomerative__linkage='ward' needs "
                "agglomerative__metric='euclidean'"
            )

    def _fit(self, X):
        from sklearn.cluster import AgglomerativeClustering

        p = self.params_
        model = AgglomerativeClustering(
            n_clusters=p["n_clusters"],
            linkage=p["linkage"],
            metric=p["metric"],
        ).fit(X)
        return model.labels_, None


@METHODS.register
class HDBSCAN(ClusteringMethod):
    name = "hdbscan"
    label = "HDBSCAN"
    description = (
        "Density-based: finds the number of clusters itself and labels "
        "outliers as noise (-1)."
    )
    params = (
        Param(
            "min_cluster_size",
            int,
            None,
            "Smallest group that counts as a cluster; empty uses the "
            "square root of the number of samples (at least 10).",
            min=2,
            optional=True,
        ),
        Param(
            "min_samples",
            int,
            None,
            "How conservative the density estimate is; empty uses "
            "min_cluster_size.",
            min=1,
            optional=True,
        ),
        Param(
            "cluster_selection_epsilon",
            float,
            0.0,
            "Merges clusters closer than this distance.",
            min=0.0,
        ),
        Param(
            "cluster_selection_method",
            str,
            "eom",
            "'eom' favours large clusters, 'leaf' many small ones.",
            choices=("eom", "leaf"),
        ),
    )
    density_based = True
    score_kind = "strength"
    assigns = "hdbscan"

    def used_params(self):
        return dict(
            super().used_params(),
            min_cluster_size=self.min_cluster_size_,
            min_samples=self.min_samples_,
        )

    def _fit(self, X):
        import hdbscan

        p = self.params_
        mcs = p["min_cluster_size"]
        if mcs is None:
            mcs = max(10, int(round(np.sqrt(len(X)))))
        self.min_cluster_size_ = mcs
        self.min_samples_ = p["min_samples"] or mcs
        model = hdbscan.HDBSCAN(
            min_cluster_size=mcs,
            min_samples=p["min_samples"],
            cluster_selection_epsilon=p["cluster_selection_epsilon"],
            cluster_selection_method=p["cluster_selection_method"],
            core_dist_n_jobs=1,
        ).fit(X)
        self.model_ = model
        return model.labels_, model.probabilities_.astype(np.float32)


@METHODS.register
class DBSCAN(ClusteringMethod):
    name = "dbscan"
    label = "DBSCAN"
    description = (
        "Density-based with a fixed radius: points with enough neighbours "
        "within eps form clusters, the rest is noise (-1)."
    )
    params = (
        Param(
            "eps",
            float,
            0.5,
            "Neighbourhood radius.",
            min=1e-9,
        ),
        Param(
            "min_samples",
            int,
            10,
            "Neighbours within eps that make a core point.",
            min=1,
        ),
        Param(
            "metric",
            str,
            "euclidean",
            "Distance between samples.",
            choices=("euclidean", "cosine", "manhattan"),
        ),
    )
    density_based = True
    assigns = "core_samples"

    def _fit(self, X):
        from sklearn.cluster import DBSCAN as SKDBSCAN

        p = self.params_
        model = SKDBSCAN(
            eps=p["eps"], min_samples=p["min_samples"], metric=p["metric"]
        ).fit(X)
        self.model_ = model
        return model.labels_, None


@METHODS.register
class GaussianMixture(ClusteringMethod):
    name = "gaussian_mixture"
    label = "Gaussian mixture"
    description = (
        "Soft clustering with a mixture of Gaussians; each sample gets its "
        "most likely component."
    )
    params = (
        _k_param("Number of components; empty picks it by silhouette."),
        Param(
            "covariance_type",
            str,
            "diag",
            "Shape of each component's covariance.",
            choices=("full", "tied", "diag", "spherical"),
        ),
        Param("max_iter", int, 100, "EM iterations.", min=1),
        _SEED,
    ) + AUTO_K_PARAMS
    k_param = "n_clusters"
    score_kind = "probability"
    assigns = "model"

    def _fit(self, X):
        from sklearn.mixture import GaussianMixture as SKGaussianMixture

        p = self.params_
        model = SKGaussianMixture(
            n_components=p["n_clusters"],
            covariance_type=p["covariance_type"],
            max_iter=p["max_iter"],
            random_state=p["random_state"],
        ).fit(X)
        self.model_ = model
        proba = model.predict_proba(X)
        labels = proba.argmax(axis=1)
        return labels, proba.max(axis=1).astype(np.float32)
