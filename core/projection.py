"""2-D projections of embeddings for the App's Embeddings panel.

Each projection method is a class in :data:`PROJECTIONS` with a parameter
schema (see :mod:`.schema`) and a ``fit_transform(X) -> Y`` that returns an
``n x 2`` float32 array.

UMAP on hundreds of thousands of points is the expensive case, and it is
built from parts that a caller may share with other computations:

1. :func:`prepare_features`: L2 normalisation (for the cosine metric) and a
   PCA to at most :data:`FEATURE_DIM` dimensions, fitted on a bounded sample
   and applied in chunks (embeddings of images have a low intrinsic
   dimension, and neighbour search is several times faster there);
2. :func:`knn_graph`: the k-nearest-neighbour graph of the features, with
   faiss (exact for small inputs, HNSW for large ones);
3. :func:`umap_embed`: a UMAP layout from those features and that graph;
4. for inputs larger than ``fit_samples``, the layout is optimised on a
   random sample only, and :func:`place_points` puts every other point at
   the membership-weighted mean of its nearest fitted neighbours.

A clustering run that reduces with UMAP before clustering can compute the
features and the graph once and pass them both to its own
:func:`umap_embed` call and to :meth:`UMAPProjection.fit_transform`.
"""

import logging
import re

import numpy as np

from .reduce import l2_normalize
from .schema import Param, ParamError, Registry

logger = logging.getLogger(__name__)

PROJECTIONS = Registry("projection method")

# Dimensions of the features the neighbour search runs on
FEATURE_DIM = 50

# The PCA behind the features is fitted on at most this many rows
PCA_FIT_ROWS = 50000

# Inputs up to this size get an exact neighbour search; larger ones HNSW
EXACT_KNN_MAX = 20000

# Rows per chunk when transforming or searching, to bound memory
CHUNK = 65536

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


def _report(progress, fraction, label=None):
    if progress is not None:
        progress(float(min(max(fraction, 0.0), 1.0)), label)


def _sub_progress(progress, lo, hi):
    """A progress callback mapping ``[0, 1]`` onto ``[lo, hi]``."""
    if progress is None:
        return None

    def sub(fraction, label=None):
        _report(progress, lo + (hi - lo) * fraction, label)

    return sub


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

    def fit_transform(self, X, progress=None, features=None, knn=None):
        """Projects the rows of ``X`` to 2-D.

        Args:
            X: an ``n x d`` float32 matrix (not modified)
            progress (None): an optional ``progress(fraction, label=None)``
            features (None): the output of :func:`prepare_features` for
                ``X`` with this projection's metric, if already computed
            knn (None): the output of :func:`knn_graph` for ``features``, if
                already computed (used by methods that need a graph)

        Returns:
            an ``n x 2`` float32 array
        """
        raise NotImplementedError


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

    def fit_transform(self, X, progress=None, features=None, knn=None):
        p = self.params_
        self.check_input(*X.shape)
        if features is None:
            features = prepare_features(
                X,
                p["metric"],
                seed=p["random_state"],
                progress=_sub_progress(progress, 0.0, 0.15),
            )
        return project_umap(
            features,
            n_neighbors=p["n_neighbors"],
            min_dist=p["min_dist"],
            n_epochs=p["n_epochs"],
            fit_samples=p["fit_samples"],
            seed=p["random_state"],
            knn=knn,
            progress=_sub_progress(progress, 0.15, 1.0),
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

    def fit_transform(self, X, progress=None, features=None, knn=None):
        p = self.params_
        self.check_input(*X.shape)
        _report(progress, 0.0, "PCA")
        Y = prepare_features(
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

    def fit_transform(self, X, progress=None, features=None, knn=None):
        from sklearn.manifold import TSNE

        p = self.params_
        self.check_input(*X.shape)
        if features is None:
            features = prepare_features(
                X,
                p["metric"],
                seed=p["random_state"],
                progress=_sub_progress(progress, 0.0, 0.1),
            )
        n = len(features)
        fit_idx = _fit_subset(n, p["fit_samples"], p["random_state"])
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
        return _place_rest(
            features,
            fit_idx,
            Y_fit,
            n_neighbors=10,
            progress=_sub_progress(progress, 0.9, 1.0),
        )


def prepare_features(
    X,
    metric="cosine",
    n_components=FEATURE_DIM,
    seed=51,
    fit_rows=PCA_FIT_ROWS,
    progress=None,
):
    """The features neighbour search and layouts run on.

    Rows are scaled to unit norm when ``metric`` is ``"cosine"`` (Euclidean
    distances between unit vectors order pairs as cosine distances do), then
    projected by a PCA fitted on at most ``fit_rows`` random rows, chunk by
    chunk, so the memory needed beyond ``X`` is that of the output.

    Args:
        X: an ``n x d`` float32 matrix (not modified)
        metric ("cosine"): ``"cosine"`` or ``"euclidean"``
        n_components (FEATURE_DIM): output dimensions; inputs with at most
            that many dimensions are only normalised (and copied)
        seed (51): seed of the row sample and of the PCA; ``None`` is 0
        fit_rows (PCA_FIT_ROWS): rows the PCA is fitted on
        progress (None): an optional ``progress(fraction, label=None)``

    Returns:
        an ``n x min(d, n_components)`` float32 matrix
    """
    from sklearn.decomposition import PCA

    if metric not in ("cosine", "euclidean"):
        raise ParamError(f"Unknown metric {metric!r}: use cosine or euclidean")
    seed = 0 if seed is None else seed
    n, d = X.shape
    cosine = metric == "cosine"

    def rows(start, stop):
        chunk = np.array(X[start:stop], dtype=np.float32)
        if cosine:
            l2_normalize(chunk)
        return chunk

    k = min(n_components, d, n)
    if d <= n_components and n_components > 2:
        out = np.empty((n, d), dtype=np.float32)
        for start in range(0, n, CHUNK):
            out[start : start + CHUNK] = rows(start, start + CHUNK)
        return out

    _report(progress, 0.0, "PCA")
    rng = np.random.default_rng(seed)
    if n > fit_rows:
        idx = np.sort(rng.choice(n, fit_rows, replace=False))
        sample = np.array(X[idx], dtype=np.float32)
        if cosine:
            l2_normalize(sample)
    else:
        sample = rows(0, n)
    if len(sample) >= 4 * d and d <= 2048:
        # one d x d covariance matrix: several times faster than a
        # randomised SVD of the sample when rows outnumber dimensions
        solver = "covariance_eigh"
    elif k < 0.8 * min(sample.shape):
        solver = "randomized"
    else:
        solver = "full"
    pca = PCA(k, svd_solver=solver, random_state=seed).fit(sample)
    del sample
    components = np.ascontiguousarray(pca.components_.T, dtype=np.float32)
    mean = pca.mean_.astype(np.float32)
    out = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, CHUNK):
        chunk = rows(start, start + CHUNK)
        chunk -= mean
        np.matmul(chunk, components, out=out[start : start + CHUNK])
        _report(progress, min(n, start + CHUNK) / n, "PCA")
    return out


def _index(F, exact):
    """A faiss index of the rows of ``F``: exact, or HNSW."""
    import faiss

    d = F.shape[1]
    if exact:
        index = faiss.IndexFlatL2(d)
    else:
        index = faiss.IndexHNSWFlat(d, 16)
        index.hnsw.efConstruction = 40
    index.add(F)
    return index


def _search(index, base, Q, k, exact, label, progress=None):
    """The ``k`` nearest rows of ``base`` (indexed in ``index``) for each
    row of ``Q``, chunk by chunk: ``(indices, Euclidean distances)``."""
    import faiss

    n = len(Q)
    I = np.empty((n, k), dtype=np.int64)
    D = np.empty((n, k), dtype=np.float32)
    if not exact:
        index.hnsw.efSearch = max(2 * k, 32)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        q = np.ascontiguousarray(Q[start:stop], dtype=np.float32)
        D[start:stop], I[start:stop] = index.search(q, k)
        _report(progress, stop / n, label)
    # an approximate search may come back short of k results: redo those
    # rows exactly
    short = np.flatnonzero((I < 0).any(axis=1))
    if len(short):
        flat = faiss.IndexFlatL2(base.shape[1])
        flat.add(base)
        q = np.ascontiguousarray(Q[short], dtype=np.float32)
        D[short], I[short] = flat.search(q, k)
    np.maximum(D, 0.0, out=D)
    np.sqrt(D, out=D)
    return I, D


def knn_graph(features, n_neighbors, exact=None, progress=None):
    """The k-nearest-neighbour graph of the rows of ``features``.

    Each row's first neighbour is the row itself, at distance 0, as UMAP
    expects of a precomputed graph (``umap.UMAP(precomputed_knn=...)``).

    Args:
        features: an ``n x d`` float32 matrix (see :func:`prepare_features`)
        n_neighbors: neighbours per row, the row itself included
        exact (None): exact search (``True``), HNSW (``False``), or exact
            up to :data:`EXACT_KNN_MAX` rows (``None``)
        progress (None): an optional ``progress(fraction, label=None)``

    Returns:
        ``(indices, distances)``: ``n x n_neighbors`` int64 and float32
        arrays, Euclidean distances in ascending order
    """
    F = np.ascontiguousarray(features, dtype=np.float32)
    n = len(F)
    if n_neighbors > n:
        raise ParamError(
            f"{n_neighbors} neighbours requested of only {n} points"
        )
    if exact is None:
        exact = n <= EXACT_KNN_MAX
    label = "Nearest neighbours"
    _report(progress, 0.0, label)
    index = _index(F, exact)
    _report(progress, 0.3, label)
    I, D = _search(
        index, F, F, n_neighbors, exact, label, _sub_progress(progress, 0.3, 1)
    )
    _self_first(I, D)
    return I, D


def _self_first(I, D):
    """Makes each row's own index its first neighbour (ties between
    duplicates may list another point first), in place."""
    rows = np.arange(len(I))
    bad = np.flatnonzero(I[:, 0] != rows)
    for r in bad:
        where = np.flatnonzero(I[r] == r)
        j = where[0] if len(where) else I.shape[1] - 1
        I[r, 1 : j + 1] = I[r, :j]
        D[r, 1 : j + 1] = D[r, :j]
        I[r, 0] = r
        D[r, 0] = 0.0


class _EpochWriter:
    """A file-like object that turns UMAP's epoch counter (written by tqdm
    with ``bar_format="{n}/{total}"``) into progress calls."""

    _PATTERN = re.compile(r"(\d+)/(\d+)")

    def __init__(self, progress):
        self.progress = progress

    def write(self, text):
        found = self._PATTERN.findall(text)
        if found:
            done, total = map(int, found[-1])
            if total:
                self.progress(done / total, "UMAP epochs")

    def flush(self):
        pass


def umap_embed(
    features,
    knn,
    n_components=2,
    n_neighbors=15,
    min_dist=0.1,
    n_epochs=None,
    seed=51,
    init="pca",
    progress=None,
):
    """A UMAP layout of ``features`` from a precomputed neighbour graph.

    Args:
        features: an ``n x d`` float32 matrix (see :func:`prepare_features`)
        knn: ``(indices, distances)`` from :func:`knn_graph` on
            ``features``, with at least ``n_neighbors`` columns
        n_components (2): output dimensions
        n_neighbors (15): neighbours that define the local structure
        min_dist (0.1): how tightly points may pack
        n_epochs (None): optimisation epochs (UMAP's default when ``None``)
        seed (51): seed; ``None`` runs the optimisation on every core
            (faster, not reproducible)
        init ("pca"): the initial layout: ``"pca"`` (the features' first
            principal components: as good here as UMAP's default
            ``"spectral"``, which costs a third of the time of a fit on
            20,000 points) or ``"spectral"``
        progress (None): an optional ``progress(fraction, label=None)``

    Returns:
        an ``n x n_components`` float32 array
    """
    import warnings

    import umap

    F = np.ascontiguousarray(features, dtype=np.float32)
    indices, dists = knn
    n = len(F)
    if n <= n_neighbors:
        raise ParamError(
            f"UMAP needs more samples ({n}) than umap__n_neighbors "
            f"({n_neighbors})"
        )
    if indices.shape != dists.shape or len(indices) != n:
        raise ValueError("The kNN graph does not match the features")
    if indices.shape[1] < n_neighbors:
        raise ValueError(
            f"The kNN graph has {indices.shape[1]} neighbours per point; "
            f"UMAP needs {n_neighbors}"
        )
    # UMAP modifies the graph it is given (disconnected edges become -1)
    indices = np.array(indices[:, :n_neighbors], dtype=np.int64)
    dists = np.array(dists[:, :n_neighbors], dtype=np.float32)

    if init == "pca" and F.shape[1] < n_components:
        init = "spectral"
    tqdm_kwds = {"disable": True}
    if progress is not None:
        tqdm_kwds = {
            "disable": False,
            "file": _EpochWriter(progress),
            "bar_format": "{n}/{total}\n",
            "mininterval": 1.0,
        }
    model = umap.UMAP(
        n_components=n_components,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric="euclidean",
        n_epochs=n_epochs,
        random_state=seed,
        n_jobs=1 if seed is not None else -1,
        precomputed_knn=(indices, dists, None),
        init=init,
        low_memory=True,
        tqdm_kwds=tqdm_kwds,
        verbose=False,
    )
    with warnings.catch_warnings():
        # "n_jobs value 1 overridden to 1 by setting random_state", and the
        # note that a graph without search index cannot transform new data
        warnings.simplefilter("ignore", UserWarning)
        Y = model.fit_transform(F)
    return np.ascontiguousarray(Y, dtype=np.float32)


def _fit_subset(n, fit_samples, seed):
    """Sorted random indices of the points a layout is fitted on, or
    ``None`` for all of them."""
    if fit_samples is None or n <= fit_samples:
        return None
    rng = np.random.default_rng(0 if seed is None else seed)
    return np.sort(rng.choice(n, fit_samples, replace=False))


def place_points(
    fit_features, fit_points, features, n_neighbors=10, progress=None
):
    """Places points among an existing layout.

    Each row of ``features`` goes to the weighted mean of the layout
    positions of its ``n_neighbors`` nearest rows of ``fit_features``, with
    UMAP's membership weights (``exp(-(d - d_nearest) / sigma)``, ``sigma``
    set per point so the weights sum to ``log2(n_neighbors)``).

    Args:
        fit_features: ``m x d`` float32 features of the laid-out points
        fit_points: their ``m x c`` float32 layout positions
        features: ``n x d`` float32 features of the points to place
        n_neighbors (10): how many laid-out neighbours place a point
        progress (None): an optional ``progress(fraction, label=None)``

    Returns:
        an ``n x c`` float32 array
    """
    m = len(fit_features)
    n = len(features)
    k = min(n_neighbors, m)
    exact = m * n <= EXACT_KNN_MAX**2
    base = np.ascontiguousarray(fit_features, np.float32)
    index = _index(base, exact)
    out = np.empty((n, fit_points.shape[1]), np.float32)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        I, D = _search(index, base, features[start:stop], k, exact, "")
        W = _membership(D, k)
        out[start:stop] = np.einsum("nk,nkc->nc", W, fit_points[I])
        _report(progress, stop / n, "Placing points")
    return out


def _membership(D, k):
    """Row-normalised UMAP membership weights of sorted kNN distances."""
    from umap.umap_ import smooth_knn_dist

    sigmas, rhos = smooth_knn_dist(D.astype(np.float32), float(k))
    W = np.exp(-np.maximum(D - rhos[:, None], 0.0) / sigmas[:, None])
    W /= W.sum(axis=1, keepdims=True)
    return W.astype(np.float32)


def _place_rest(features, fit_idx, fit_points, n_neighbors, progress=None):
    """The full layout: the fitted points where they are, the others
    placed among them."""
    n = len(features)
    Y = np.empty((n, fit_points.shape[1]), dtype=np.float32)
    Y[fit_idx] = fit_points
    rest = np.ones(n, dtype=bool)
    rest[fit_idx] = False
    rest_idx = np.flatnonzero(rest)
    Y[rest_idx] = place_points(
        features[fit_idx],
        fit_points,
        features[rest_idx],
        n_neighbors,
        progress=progress,
    )
    return Y


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
    fit_idx = _fit_subset(n, fit_samples, seed)
    F = features if fit_idx is None else features[fit_idx]
    logger.info("UMAP layout of %d of %d points", len(F), n)
    if fit_idx is not None or knn is None or knn[0].shape[1] < n_neighbors:
        knn = knn_graph(
            F, n_neighbors, progress=_sub_progress(progress, 0, 0.2)
        )
    _report(progress, 0.2, f"UMAP on {len(F):,} points")
    Y_fit = umap_embed(
        F,
        knn,
        n_components=2,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        n_epochs=n_epochs,
        seed=seed,
        progress=_sub_progress(progress, 0.2, 0.9),
    )
    if fit_idx is None:
        _report(progress, 1.0, "Done")
        return Y_fit
    return _place_rest(
        features,
        fit_idx,
        Y_fit,
        n_neighbors=min(n_neighbors, 10),
        progress=_sub_progress(progress, 0.9, 1.0),
    )
