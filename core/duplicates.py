"""Near-duplicate groups by cosine similarity, exact duplicates by file
content, and the choice of a threshold from the data.

Pairs of rows whose cosine similarity is at or above a threshold are found
block by block, never as an ``n x n`` matrix: every pair up to
:data:`EXACT_MAX` rows; beyond, within cells of a faiss k-means (each row
in its two nearest cells), by matrix products on the exact vectors (see
:class:`Searcher`). The groups are the connected components of the pairs
(and of equal file hashes); one sample per group is kept.
"""

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .neighbors import l2_normalize
from .progress import report as _report

logger = logging.getLogger(__name__)

# Up to this many rows (per searched part) every pair is compared
EXACT_MAX = 10000
# Beyond, rows are split into cells of about this many rows
CELL_SIZE = 250
# ... each row joining this many of its nearest cells
SPILL = 2
# ... found on a random projection of the rows to this many dimensions
CELL_DIM = 64
# Similarities computed at once at most (of 4 bytes each)
BLOCK_ENTRIES = 1 << 23
# Threads that compare cells (each with single-threaded BLAS)
WORKERS = max(1, min(4, os.cpu_count() or 1))


def unit_vectors(X, center=False):
    """``X`` as float32 rows of unit length (in place when it is already
    float32), after subtracting the mean row with ``center``."""
    X = np.asarray(X, dtype=np.float32)
    if center:
        mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        for s in range(0, len(X), 65536):
            X[s : s + 65536] -= mean
    return l2_normalize(X)


class Searcher:
    """Similarities by inner product among the unit rows ``U``, block by
    block: up to :data:`EXACT_MAX` rows every pair is compared; beyond,
    the rows are split into cells (k-means on a random projection of the rows, cells of
    about :data:`CELL_SIZE` rows), each row joins its :data:`SPILL`
    nearest cells, and the rows of each cell are compared with each other
    by matrix products. Rows that share no cell are never compared: near
    duplicates share their nearest cell."""

    def __init__(self, U, within=None, seed=51, progress=None):
        self.U = U
        n = len(U)
        self.exact = True
        self.cells = []
        for part in _parts(n, within):
            if len(part) < 2:
                continue
            if len(part) <= EXACT_MAX:
                self.cells.append(part)
                continue
            self.exact = False
            # (no copy of every row when there is one part)
            rows = U if len(part) == n else U[part]
            for cell in _cells(rows, seed, progress):
                self.cells.append(part[cell])

    def _cell(self, cols, threshold):
        """One cell's share of a scan: ``(pairs, best)``, the pairs of
        its rows at or above ``threshold`` (``I < J`` within the cell;
        none for an infinite threshold) and, per block of rows, ``(rows,
        their nearest row in the cell, similarity)``. Blocks of at most
        :data:`BLOCK_ENTRIES` similarities."""
        step = max(256, BLOCK_ENTRIES // max(1, len(cols)))
        C = np.ascontiguousarray(self.U[cols])
        pairs, best = [], []
        for s in range(0, len(cols), step):
            rows = cols[s : s + step]
            S = C[s : s + step] @ C.T
            at = np.arange(len(rows))
            if np.isfinite(threshold):
                r, c = np.nonzero(S >= threshold)
                keep = c > r + s  # each pair of a cell once
                r, c = r[keep], c[keep]
                pairs.append((rows[r], cols[c], S[r, c]))
            S[at, at + s] = -np.inf  # not itself
            nearest = np.argmax(S, axis=1)
            best.append((rows, cols[nearest], S[at, nearest]))
        return pairs, best

    def _scan_cells(self, threshold, progress=None, label=None):
        """:meth:`_cell` of every cell, in order, on :data:`WORKERS`
        threads, each with single-threaded BLAS: the products of a cell
        are small, and a multi-threaded BLAS spends more time waiting
        for its threads than multiplying (5x slower on a loaded 2-core
        machine)."""
        from threadpoolctl import threadpool_limits

        total = sum(len(c) for c in self.cells) or 1
        done = 0
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(
            WORKERS
        ) as pool:
            window = 4 * WORKERS  # cells in flight: bounded memory
            for w in range(0, len(self.cells), window):
                cells = self.cells[w : w + window]
                for cols, out in zip(
                    cells,
                    pool.map(lambda c: self._cell(c, threshold), cells),
                ):
                    yield out
                    done += len(cols)
                _report(progress, done / total, label)

    def scan(self, threshold, progress=None, max_pairs=None):
        """One pass over the cells: each row's nearest other row (among
        those it shares a cell with) and the pairs at or above
        ``threshold``.

        Args:
            threshold: a similarity
            progress (None): an optional ``progress(fraction, label)``
            max_pairs (None): give up collecting pairs beyond this many
                (the pairs are then ``None``)

        Returns:
            ``(nn, sim, pairs)``: each row's nearest row (``-1`` if none)
            and their similarity, and ``(I, J, S)`` with ``I < J``
        """
        n = len(self.U)
        nn = np.full(n, -1, dtype=np.int64)
        sim = np.full(n, -np.inf, dtype=np.float32)
        parts, count = [], 0
        for pairs, best in self._scan_cells(
            threshold, progress, "similarities"
        ):
            if parts is not None:
                parts += pairs
                count += sum(len(p[0]) for p in pairs)
                if max_pairs is not None and count > max_pairs:
                    parts = None
            for rows, near, value in best:
                better = value > sim[rows]
                sim[rows[better]] = value[better]
                nn[rows[better]] = near[better]
        sim[nn < 0] = -1.0
        return nn, sim, None if parts is None else self._unique(parts)

    def _unique(self, parts):
        if not parts:
            return _empty_pairs()
        I, J, S = (np.concatenate(p) for p in zip(*parts))
        swap = I > J
        I[swap], J[swap] = J[swap], I[swap]
        if not self.exact:  # a pair of rows that share two cells
            _, first = np.unique(I * len(self.U) + J, return_index=True)
            I, J, S = I[first], J[first], S[first]
        return I, J, S.astype(np.float32)

    def pairs(self, threshold, progress=None):
        """Every pair ``i < j`` with ``U[i] . U[j] >= threshold`` (of rows
        that share a cell): ``(I, J, S)``."""
        parts = []
        for pairs, _ in self._scan_cells(threshold, progress, "pairs"):
            parts += pairs
        return self._unique(parts)

    def nearest(self, progress=None):
        """Each row's nearest other row (among those it shares a cell
        with; ``-1`` if none) and their similarity."""
        nn, sim, _ = self.scan(np.inf, progress)
        return nn, sim


def _cells(U, seed, progress=None):
    """The rows of each cell: k-means centroids (fitted on a sample) of a
    random projection of ``U``, each row in its :data:`SPILL` nearest
    cells."""
    import faiss

    n, d = U.shape
    rng = np.random.default_rng(seed)
    # a random projection keeps the distances of near duplicates
    P = rng.normal(size=(d, min(CELL_DIM, d))).astype(np.float32)
    F = np.empty((n, P.shape[1]), dtype=np.float32)
    for s in range(0, n, 65536):
        np.matmul(U[s : s + 65536], P, out=F[s : s + 65536])
    n_cells = max(2, int(round(n / CELL_SIZE)))
    train = F[np.sort(rng.choice(n, min(n, 50 * n_cells), replace=False))]
    # small work: one thread (OpenMP's busy waiting costs several times
    # the work itself on a loaded machine)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        km = faiss.Kmeans(F.shape[1], n_cells, niter=12, seed=seed)
        km.train(np.ascontiguousarray(train))
        _, A = km.index.search(F, SPILL)
    finally:
        faiss.omp_set_num_threads(threads)
    del F
    _report(progress, 0.1, "cells")
    flat = A.ravel()
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(n_cells + 1))
    rows = order // SPILL
    return [
        np.sort(rows[bounds[c] : bounds[c + 1]])
        for c in range(n_cells)
        if bounds[c + 1] - bounds[c] > 1
    ]


def pair_similarity(U, I, J):
    """``U[I[k]] . U[J[k]]`` for each k, in chunks."""
    out = np.empty(len(I), dtype=np.float32)
    for s in range(0, len(I), 65536):
        a, b = U[I[s : s + 65536]], U[J[s : s + 65536]]
        out[s : s + 65536] = np.einsum("ij,ij->i", a, b)
    return out


def _parts(n, within):
    """The rows of each part of ``within`` (all rows if ``None``)."""
    if within is None:
        return [np.arange(n)]
    within = np.asarray(within)
    order = np.argsort(within, kind="stable")
    bounds = np.flatnonzero(within[order][1:] != within[order][:-1]) + 1
    return np.split(order, bounds)


def similar_pairs(U, threshold, within=None, progress=None):
    """The pairs of rows of ``U`` (unit vectors) whose cosine similarity is
    at least ``threshold`` (see :class:`Searcher`).

    Returns:
        ``(I, J, S)``: int64 rows ``I < J`` and float32 similarities
    """
    return Searcher(U, within).pairs(threshold, progress)


def _empty_pairs():
    return (
        np.empty(0, np.int64),
        np.empty(0, np.int64),
        np.empty(0, np.float32),
    )


def components(n, I, J):
    """Groups of the graph on ``n`` nodes with edges ``(I, J)``: an int64
    array, ``-1`` for nodes without an edge, groups numbered from 0 by
    size (largest first), then by their first node."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    out = np.full(n, -1, dtype=np.int64)
    if len(I) == 0:
        return out
    graph = coo_matrix(
        (np.ones(len(I), dtype=np.int8), (I, J)), shape=(n, n)
    ).tocsr()
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    member = sizes[labels] >= 2
    first = np.full(len(sizes), n, dtype=np.int64)
    np.minimum.at(first, labels, np.arange(n))
    multi = np.flatnonzero(sizes >= 2)
    ranked = multi[np.lexsort((first[multi], -sizes[multi]))]
    new_id = np.full(len(sizes), -1, dtype=np.int64)
    new_id[ranked] = np.arange(len(ranked))
    out[member] = new_id[labels[member]]
    return out


def keep_one(groups, U, sizes=None):
    """One sample per group: the most typical (the member closest to the
    mean of the group's unit vectors) or, with ``sizes`` (e.g. pixel
    areas), the largest, ties broken by typicality.

    Returns:
        a boolean array: ``True`` for the kept member of each group and
        for every sample in no group
    """
    keep = groups < 0
    members = np.flatnonzero(groups >= 0)
    if len(members) == 0:
        return keep
    g = groups[members]
    n_groups = int(g.max()) + 1
    means = np.zeros((n_groups, U.shape[1]), dtype=np.float64)
    np.add.at(means, g, U[members])
    typical = np.einsum("ij,ij->i", U[members], means[g].astype(np.float32))
    if sizes is None:
        primary = np.zeros(len(members))
    else:
        primary = np.asarray(sizes, dtype=np.float64)[members]
        primary = np.nan_to_num(primary, nan=-1.0)
    # best member of each group: largest primary, then most typical
    order = np.lexsort((-typical, -primary, g))
    first = np.ones(len(order), dtype=bool)
    first[1:] = g[order][1:] != g[order][:-1]
    keep[members[order[first]]] = True
    return keep


# --------------------------------------------------------------------------
# Exact duplicates: equal file contents
# --------------------------------------------------------------------------


def _file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _file_hash(path):
    try:
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return None


def file_hashes(paths, workers=8, progress=None):
    """Content hashes of the files whose size another file shares (only
    those can be equal): ``(hashes, unreadable)``, a list with ``None``
    for files of a unique size or unreadable, and the number of files
    that could not be read."""
    n = len(paths)
    with ThreadPoolExecutor(workers) as pool:
        chunks = [paths[s : s + 4096] for s in range(0, n, 4096)]
        sizes = [
            size
            for part in pool.map(lambda c: [_file_size(p) for p in c], chunks)
            for size in part
        ]
        unreadable = sum(s is None for s in sizes)
        counts = {}
        for s in sizes:
            if s is not None:
                counts[s] = counts.get(s, 0) + 1
        todo = [
            i for i, s in enumerate(sizes) if s is not None and counts[s] > 1
        ]
        _report(progress, 0.5, "file sizes")
        hashes = [None] * n
        for i, h in zip(todo, pool.map(_file_hash, [paths[i] for i in todo])):
            hashes[i] = None if h is None else f"{sizes[i]}:{h}"
            unreadable += h is None
    return hashes, unreadable


def hash_pairs(hashes):
    """Edges that join the files of equal hash: ``(I, J)``, each file to
    the first of its hash."""
    first = {}
    I, J = [], []
    for i, h in enumerate(hashes):
        if h is None:
            continue
        j = first.setdefault(h, i)
        if j != i:
            I.append(j)
            J.append(i)
    return np.array(I, dtype=np.int64), np.array(J, dtype=np.int64)


def _area(path):
    from PIL import Image

    try:
        with Image.open(path) as im:  # reads the header only
            return float(im.size[0] * im.size[1])
    except Exception:  # unreadable or not an image: smallest
        return float("nan")


def image_areas(paths, workers=8):
    """Pixel areas of the images at ``paths`` (from their headers; ``nan``
    for files that cannot be read)."""
    with ThreadPoolExecutor(workers) as pool:
        return np.array(list(pool.map(_area, paths)), dtype=np.float64)
