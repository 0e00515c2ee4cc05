"""2-D projections of embeddings for the App's Embeddings panel.

Each projection method is a class in :data:`PROJECTIONS` with a parameter
schema (see :mod:`.schema`) and a ``fit_transform(X) -> Y`` that returns an
``n x 2`` float32 array.

The neighbour search and UMAP layout behind them live in :mod:`.neighbors`,
shared with the reduction before clustering: a projection of the data a
UMAP reduction saw reuses its features and graph, handed over as a
:class:`.neighbors.NeighborGraph`.
"""

import logging

import numpy as np

from . import neighbors
from .progress import report as _report
from .progress import span
from .schema import Param, ParamError, Registry

logger = logging.getLogger(__name__)

PROJECTIONS = Registry("projection method")

_UMAP_SEED = Param(
    "random_state",
    int,
    51,
    "Seed; empty lets UMAP use both cores but makes the layout "
    "non-reproducible.",
    min=0,
    optional=True,
)

_SEED = Param(
    "random_state",
    int,
    51,
    "Seed of the random sample and solver.",
    min=0,
)

_METRIC = Param(
    "metric",
    str,
    "cosine",
    "Distance between embeddings.",
    choices=("cosine", "euclidean"),
)


def _fit_samples_param(default):
    return Param(
        "fit_samples",
        int,
        default,
        "Largest number of points the layout is optimised on; the others "
        "are placed from their nearest fitted neighbours. Empty fits all "
        "points (much slower on large views).",
        min=1000,
        optional=True,
    )


class Projection:
    """Base class of the projection methods.

    Class attributes:
        name: the registry name, used as the ``<name>__<param>`` prefix
        label: a human name for forms
        description: one sentence for forms and docs
        params: the parameter schema
        min_samples_param: the parameter that sets the smallest input, if
            any
    """

    name = None
    label = None
    description = None
    params = ()
    min_samples_param = None

    def __init__(self, **params):
        self.params_ = PROJECTIONS.resolve(self.name, params)

    def min_samples(self):
        """The fewest samples this projection accepts."""
        if self.min_samples_param is None:
            return 3
        return int(self.params_[self.min_samples_param]) + 1

    def check_input(self, n, d):
        """Raises a :class:`ParamError` if ``n`` vectors of dimension ``d``
        cannot be projected with these parameters."""
        need = self.min_samples()
        if n < need:
            if self.min_samples_param is None:
                raise ParamError(
                    f"Projection '{self.name}' needs at least {need} samples; "
                    f"the view has {n}"
                )
            key = f"{self.name}__{self.min_samples_param}"
            value = self.params_[self.min_samples_param]
            raise ParamError(
                f"The view has {n} samples, not more than {key}={value}: "
                f"lower {key} below {n} or project a larger view"
            )
        if d < 2:
            raise ParamError(
                f"Embeddings of dimension {d} cannot be projected to 2-D"
            )

    def fit_transform(self, X, progress=None, graph=None):
        """Projects the rows of ``X`` to 2-D.

        Args:
            X: an ``n x d`` float32 matrix (not modified)
            progress (None): an optional ``progress(fraction, label=None)``
            graph (None): a :class:`.neighbors.NeighborGraph` already
                computed for ``X`` (by a reducer); its features are reused
                when their metric is this projection's, and its kNN graph
                where the projection needs one over every row

        Returns:
            an ``n x 2`` float32 array
        """
        raise NotImplementedError

    def _features(self, X, graph, progress):
        """The neighbour-search features of ``X`` for this projection's
        metric: the graph's, when it has them."""
        p = self.params_
        if graph is not None and graph.metric == p["metric"]:
            return graph.features
        return neighbors.prepare_features(
            X, p["metric"], seed=p["random_state"], progress=progress
        )


@PROJECTIONS.register
class UMAPProjection(Projection):
    """UMAP, optimised on at most ``fit_samples`` points."""

    name = "umap"
    label = "UMAP"
    description = (
        "Non-linear projection that keeps local neighbourhoods: clusters "
        "appear as separate islands."
    )
    params = (
        Param(
            "n_neighbors",
            int,
            15,
            "Neighbours that define the local structure; larger values "
            "keep more of the global structure.",
            min=2,
            max=200,
        ),
        Param(
            "min_dist",
            float,
            0.1,
            "How tightly points may pack in the plot.",
            min=0.0,
            max=1.0,
        ),
        _METRIC,
        Param(
            "n_epochs",
            int,
            None,
            "Optimisation epochs; empty picks 500 for small inputs, 200 "
            "for large ones.",
            min=10,
            max=2000,
            optional=True,
        ),
        _fit_samples_param(20000),
        _UMAP_SEED,
    )
    min_samples_param = "n_neighbors"

    def fit_transform(self, X, progress=None, graph=None):
        p = self.params_
        self.check_input(*X.shape)
        features = self._features(X, graph, span(progress, 0.0, 0.15))
        knn = None
        n = len(X)
        fit_all = p["fit_samples"] is None or n <= p["fit_samples"]
        if graph is not None and graph.features is features and fit_all:
            knn = graph.knn_of_all(p["n_neighbors"])
        return project_umap(
            features,
            n_neighbors=p["n_neighbors"],
            min_dist=p["min_dist"],
            n_epochs=p["n_epochs"],
            fit_samples=p["fit_samples"],
            seed=p["random_state"],
            knn=knn,
            progress=span(progress, 0.15, 1.0),
        )


@PROJECTIONS.register
class PCAProjection(Projection):
    """The first two principal components."""

    name = "pca"
    label = "PCA"
    description = (
        "Linear projection on the two directions of largest variance: "
        "fast, but overlapping clusters stay overlapped."
    )
    params = (_METRIC, _SEED)

    def fit_transform(self, X, progress=None, graph=None):
        p = self.params_
        self.check_input(*X.shape)
        _report(progress, 0.0, "PCA")
        Y = neighbors.prepare_features(
            X, p["metric"], n_components=2, seed=p["random_state"]
        )
        _report(progress, 1.0, "PCA")
        return Y


@PROJECTIONS.register
class TSNEProjection(Projection):
    """Barnes-Hut t-SNE (scikit-learn), on at most ``fit_samples``
    points."""

    name = "tsne"
    label = "t-SNE"
    description = (
        "Non-linear projection that separates local groups well; distances "
        "between groups mean little. Slower than UMAP."
    )
    params = (
        Param(
            "perplexity",
            float,
            30.0,
            "Effective number of neighbours.",
            min=2.0,
            max=100.0,
        ),
        _METRIC,
        Param(
            "max_iter",
            int,
            1000,
            "Optimisation iterations.",
            min=250,
            max=5000,
        ),
        _fit_samples_param(10000),
        _SEED,
    )

    def min_samples(self):
        # scikit-learn requires perplexity < n_samples
        return int(np.floor(self.params_["perplexity"])) + 1

    def check_input(self, n, d):
        if n < self.min_samples():
            value = self.params_["perplexity"]
            raise ParamError(
                f"The view has {n} samples, not more than "
                f"tsne__perplexity={value:g}: lower tsne__perplexity below "
                f"{n} or project a larger view"
            )
        super().check_input(n, d)

    def fit_transform(self, X, progress=None, graph=None):
        from sklearn.manifold import TSNE

        p = self.params_
        self.check_input(*X.shape)
        features = self._features(X, graph, span(progress, 0.0, 0.1))
        n = len(features)
        fit_idx = neighbors.fit_subset(n, p["fit_samples"], p["random_state"])
        F = features if fit_idx is None else features[fit_idx]
        _report(progress, 0.1, f"t-SNE on {len(F):,} points")
        tsne = TSNE(
            n_components=2,
            perplexity=p["perplexity"],
            max_iter=p["max_iter"],
            init="pca",
            learning_rate="auto",
            random_state=p["random_state"],
            n_jobs=1,
        )
        Y_fit = np.ascontiguousarray(tsne.fit_transform(F), np.float32)
        if fit_idx is None:
            _report(progress, 1.0)
            return Y_fit
        _report(progress, 0.9, "Placing the other points")
        return neighbors.place_rest(
            features,
            fit_idx,
            Y_fit,
            n_neighbors=10,
            progress=span(progress, 0.9, 1.0),
        )


def project_umap(
    features,
    n_neighbors=15,
    min_dist=0.1,
    n_epochs=None,
    fit_samples=20000,
    seed=51,
    knn=None,
    progress=None,
):
    """A 2-D UMAP of ``features``, optimised on at most ``fit_samples``
    random points, the others placed with :func:`place_points`.

    Args:
        features: an ``n x d`` float32 matrix (see :func:`prepare_features`)
        n_neighbors (15): neighbours that define the local structure
        min_dist (0.1): how tightly points may pack
        n_epochs (None): optimisation epochs (UMAP's default when ``None``)
        fit_samples (20000): the most points the layout is optimised on;
            ``None`` for all
        seed (51): seed (``None``: parallel and not reproducible)
        knn (None): ``(indices, distances)`` of all of ``features`` from
            :func:`knn_graph`; used when every point is fitted, otherwise
            the neighbour graph of the fitted sample is computed
        progress (None): an optional ``progress(fraction, label=None)``

    Returns:
        an ``n x 2`` float32 array
    """
    n = len(features)
    if n <= n_neighbors:
        raise ParamError(
            f"The view has {n} samples, not more than "
            f"umap__n_neighbors={n_neighbors}: lower umap__n_neighbors "
            f"below {n} or project a larger view"
        )
    fit_idx = neighbors.fit_subset(n, fit_samples, seed)
    F = features if fit_idx is None else features[fit_idx]
    logger.info("UMAP layout of %d of %d points", len(F), n)
    if fit_idx is not None or knn is None or knn[0].shape[1] < n_neighbors:
        knn = neighbors.knn_graph(
            F, n_neighbors, progress=span(progress, 0, 0.2)
        )
    _report(progress, 0.2, f"UMAP on {len(F):,} points")
    Y_fit = neighbors.umap_embed(
        F,
        knn,
        n_components=2,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        n_epochs=n_epochs,
        seed=seed,
        progress=span(progress, 0.2, 0.9),
    )
    if fit_idx is None:
        _report(progress, 1.0, "Done")
        return Y_fit
    return neighbors.place_rest(
        features,
        fit_idx,
        Y_fit,
        n_neighbors=min(n_neighbors, 10),
        progress=span(progress, 0.9, 1.0),
    )
