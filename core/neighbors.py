"""Neighbour graphs and UMAP layouts, shared by the reduction before
clustering (:mod:`.reduce`) and the 2-D projections (:mod:`.projection`).

UMAP on hundreds of thousands of points is the expensive case, and it is
built from parts that callers share:

1. :func:`prepare_features`: L2 normalisation (for the cosine metric) and a
   PCA to at most :data:`FEATURE_DIM` dimensions, fitted on a bounded sample
   and applied in chunks (embeddings of images have a low intrinsic
   dimension, and neighbour search is several times faster there);
2. :func:`knn_graph`: the k-nearest-neighbour graph of the features, with
   faiss (exact for small inputs, HNSW for large ones);
3. :func:`umap_embed`: a UMAP layout from those features and that graph;
4. for inputs larger than a layout's ``fit_samples``, the layout is
   optimised on a random sample only (:func:`fit_subset`), and
   :func:`place_points` puts every other point at the membership-weighted
   mean of its nearest fitted neighbours (:func:`place_rest`).

A reducer that computed features and a graph hands them on as a
:class:`NeighborGraph`, which a projection of the same data may reuse.
"""

import dataclasses
import logging
import re
import warnings
from typing import Optional

import numpy as np

from .progress import report as _report
from .progress import span
from .schema import ParamError

logger = logging.getLogger(__name__)

# Dimensions of the features the neighbour search runs on
FEATURE_DIM = 50

# The PCA behind the features is fitted on at most this many rows
PCA_FIT_ROWS = 50000

# Inputs up to this size get an exact neighbour search; larger ones HNSW
EXACT_KNN_MAX = 20000

# Rows per chunk when transforming or searching, to bound memory
CHUNK = 65536


def l2_normalize(X):
    """Scales rows to unit L2 norm in place, in chunks so that no full-size
    temporary is made (zero rows stay zero)."""
    for s in range(0, len(X), 65536):
        part = X[s : s + 65536]
        norms = np.sqrt(np.einsum("ij,ij->i", part, part))[:, None]
        np.maximum(norms, 1e-12, out=norms)
        part /= norms
    return X


@dataclasses.dataclass(frozen=True)
class NeighborGraph:
    """Neighbour-search features and the kNN graph computed from them.

    Args:
        features: the ``n x d`` float32 output of :func:`prepare_features`
        metric: the metric the features were prepared for
        knn: ``(indices, distances)`` from :func:`knn_graph`, over the rows
            ``fit_idx`` of ``features``
        fit_idx: the rows the graph covers, or ``None`` for all of them
    """

    features: np.ndarray
    metric: str
    knn: tuple
    fit_idx: Optional[np.ndarray] = None

    def knn_of_all(self, n_neighbors):
        """The graph over every row with at least ``n_neighbors``
        neighbours, or ``None`` if this graph is not one."""
        if self.fit_idx is not None or self.knn[0].shape[1] < n_neighbors:
            return None
        return self.knn


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


# The inverted-file index (``approximate="ivf"``): lists per sqrt(n) rows,
# lists searched per query, and k-means iterations of its training
IVF_LISTS_PER_SQRT = 2
IVF_PROBES = 12
IVF_TRAIN_ITER = 10


def _index(F, exact, approximate="hnsw", seed=51):
    """A faiss index of the rows of ``F``: exact, HNSW or an inverted
    file (IVF, trained on a sample of the rows)."""
    import faiss

    n, d = F.shape
    if exact:
        index = faiss.IndexFlatL2(d)
    elif approximate == "ivf":
        nlist = max(1, min(n // 30, int(IVF_LISTS_PER_SQRT * np.sqrt(n))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        index.cp.niter = IVF_TRAIN_ITER
        index.cp.seed = seed
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(n, min(n, 30 * nlist), replace=False))
        index.train(np.ascontiguousarray(F[rows]))
        index.nprobe = min(nlist, IVF_PROBES)
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
    if hasattr(index, "hnsw"):
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


def knn_graph(
    features, n_neighbors, exact=None, progress=None, approximate="hnsw"
):
    """The k-nearest-neighbour graph of the rows of ``features``.

    Each row's first neighbour is the row itself, at distance 0, as UMAP
    expects of a precomputed graph (``umap.UMAP(precomputed_knn=...)``).

    Args:
        features: an ``n x d`` float32 matrix (see :func:`prepare_features`)
        n_neighbors: neighbours per row, the row itself included
        exact (None): exact search (``True``), approximate (``False``), or
            exact up to :data:`EXACT_KNN_MAX` rows (``None``)
        progress (None): an optional ``progress(fraction, label=None)``
        approximate ("hnsw"): the approximate search: ``"hnsw"`` (a graph;
            what UMAP layouts use) or ``"ivf"`` (an inverted file searched
            in :data:`IVF_PROBES` of its lists: several times faster for
            one search of every row, with a recall near 0.97 on clustered
            embeddings)

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
    index = _index(F, exact, approximate)
    _report(progress, 0.3, label)
    I, D = _search(
        index, F, F, n_neighbors, exact, label, span(progress, 0.3, 1)
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


def _graph_for_umap(knn, n, n_neighbors):
    """Checks a kNN graph against ``n`` points and returns copies of its
    first ``n_neighbors`` columns (UMAP modifies the graph it is given:
    disconnected edges become -1)."""
    indices, dists = knn
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
    return (
        np.array(indices[:, :n_neighbors], dtype=np.int64),
        np.array(dists[:, :n_neighbors], dtype=np.float32),
    )


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
    import umap

    F = np.ascontiguousarray(features, dtype=np.float32)
    indices, dists = _graph_for_umap(knn, len(F), n_neighbors)
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


def fit_subset(n, fit_samples, seed):
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


def place_rest(features, fit_idx, fit_points, n_neighbors, progress=None):
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
