"""k-means for large inputs: greedy k-means++ seeding on a bounded sample,
then Lloyd iterations with faiss (scikit-learn where faiss is missing)."""

import numpy as np


def kmeans(X, k, max_iter, seed, n_init=1, seed_sample=2000, eval_rows=20000):
    """k-means with greedy k-means++ seeding on a bounded sample, and
    restarts that cost a fraction of a full run.

    Each of the ``n_init`` restarts seeds with greedy k-means++ on at most
    ``max(seed_sample, 20 k)`` random rows and runs Lloyd iterations with
    faiss on at most 256 rows per centroid (its default sampling); the
    restart whose centroids fit a fixed random sample of ``eval_rows`` rows
    best (lowest inertia there) wins, and only its centroids are used to
    assign every row. With k-means++ seeds this matches full-data k-means
    in quality at a fraction of the time, and the restarts take the luck
    out of the seed.

    Returns:
        ``(centroids (k x d float32), labels (n int64), inertia)``
    """
    rng = np.random.default_rng(seed)
    n = len(X)
    evaluation = X[np.sort(rng.choice(n, min(n, eval_rows), replace=False))]
    best = None
    for i in range(n_init):
        centroids = _restart(X, k, max_iter, seed + i, seed_sample)
        score = _inertia(evaluation, centroids)[1]
        if best is None or score < best[1]:
            best = (centroids, score)
    labels, inertia = _inertia(X, best[0])
    return best[0], labels, inertia


def _restart(X, k, max_iter, seed, seed_sample):
    """The centroids of one seeded run of Lloyd iterations on a sample."""
    rng = np.random.default_rng(seed)
    n = len(X)
    idx = rng.choice(n, min(n, max(seed_sample, 20 * k)), replace=False)
    idx.sort()
    init = kmeans_plusplus(X[idx], k, rng)
    try:
        import faiss
    except ImportError:
        from sklearn.cluster import KMeans as SKKMeans

        km = SKKMeans(k, init=init, n_init=1, max_iter=max_iter).fit(X)
        return km.cluster_centers_.astype(np.float32)
    km = faiss.Kmeans(
        X.shape[1],
        k,
        niter=max_iter,
        seed=seed,
        max_points_per_centroid=256,
        min_points_per_centroid=1,
        spherical=False,
        verbose=False,
    )
    km.train(X, init_centroids=init)
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def _inertia(X, centroids, chunk=65536):
    """The nearest centroid of each row, and the sum of squared distances
    to it."""
    C = np.ascontiguousarray(centroids, dtype=np.float32)
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None:
        index = faiss.IndexFlatL2(C.shape[1])
        index.add(C)
        D, I = index.search(np.ascontiguousarray(X, dtype=np.float32), 1)
        return I[:, 0].astype(np.int64), float(D.sum())
    c2 = np.einsum("ij,ij->i", C, C)
    labels = np.empty(len(X), dtype=np.int64)
    total = 0.0
    for s in range(0, len(X), chunk):
        part = np.ascontiguousarray(X[s : s + chunk], dtype=np.float32)
        d = c2[None, :] - 2 * (part @ C.T)
        labels[s : s + chunk] = d.argmin(axis=1)
        best = d[np.arange(len(part)), labels[s : s + chunk]]
        total += float((best + np.einsum("ij,ij->i", part, part)).sum())
    return labels, max(total, 0.0)


def kmeans_plusplus(S, k, rng):
    """Greedy k-means++ seeds (``2 + log k`` candidates per step) among the
    rows of ``S``, as a ``k x d`` float32 array."""
    S = np.ascontiguousarray(S, dtype=np.float32)
    n = len(S)
    trials = 2 + int(np.log(k))
    sq = np.einsum("ij,ij->i", S, S)
    first = rng.integers(n)
    chosen = [first]
    d2 = np.maximum(sq - 2 * (S @ S[first]) + sq[first], 0)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:  # fewer distinct rows than k: repeat some
            cand = rng.integers(n, size=trials)
        else:
            cand = rng.choice(n, trials, p=d2 / total)
        dc = sq[None, :] - 2 * (S[cand] @ S.T) + sq[cand][:, None]
        new = np.minimum(d2[None, :], np.maximum(dc, 0))
        best = int(new.sum(axis=1).argmin())
        d2 = new[best]
        chosen.append(cand[best])
    return S[chosen].copy()
