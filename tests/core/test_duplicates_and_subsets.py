"""Near-duplicate pairs, groups, the suggested threshold and balanced
allocations on plain arrays (fixed seeds; no database, no fiftyone)."""

import numpy as np
import pytest


def _planted(n=30000, d=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    m = n // 50
    rows = rng.choice(n, 2 * m, replace=False)
    a, b = rows[:m], rows[m:]
    X[b] = X[a] + 0.05 * rng.normal(size=(m, d)).astype(np.float32)
    return X, {(min(i, j), max(i, j)) for i, j in zip(a, b)}


def test_cells_find_the_pairs_an_exact_search_finds(core_package):
    D = core_package.duplicates
    X, planted = _planted()
    U = D.unit_vectors(X)
    searcher = D.Searcher(U)
    assert not searcher.exact
    I, J, S = searcher.pairs(0.95)
    found = set(zip(I.tolist(), J.tolist()))
    assert len(found & planted) >= 0.99 * len(planted)
    assert (S >= 0.95).all() and (I < J).all()
    # the same pairs within parts: none across parts
    parts = np.arange(len(U)) % 3
    I2, J2, _ = D.similar_pairs(U, 0.95, within=parts)
    assert (parts[I2] == parts[J2]).all()


def test_suggested_threshold_sits_between_the_modes(core_package):
    D, T = core_package.duplicates, core_package.dup_threshold
    X, planted = _planted(n=8000)
    pv = T.preview(D.Searcher(D.unit_vectors(X)))
    assert pv["found"]
    t = pv["suggested"]
    I, J, _ = D.similar_pairs(D.unit_vectors(X), t)
    found = set(zip(I.tolist(), J.tolist()))
    assert len(found & planted) == len(planted) == len(found)
    assert sum(pv["histogram"]["count"]) == 8000
    assert all(p[2] >= t for p in pv["above"])
    assert all(p[2] < t for p in pv["below"])
    # no duplicates: the default, flagged as not found
    rng = np.random.default_rng(1)
    U = core_package.duplicates.unit_vectors(
        rng.normal(size=(3000, 64)).astype(np.float32)
    )
    t, found = T.suggest(T.preview(D.Searcher(U))["sim"])
    assert not found and t == T.FALLBACK


def test_groups_and_the_kept_sample(core_package):
    D = core_package.duplicates
    I = np.array([0, 1, 5])
    J = np.array([1, 2, 6])
    g = D.components(8, I, J)
    assert g.tolist() == [0, 0, 0, -1, -1, 1, 1, -1]
    U = np.eye(8, dtype=np.float32)
    U[1] = (U[0] + U[1] + U[2]) / np.sqrt(3)  # the centre of group 0
    keep = D.keep_one(g, U)
    assert keep.tolist() == [False, True, False, True, True, True, False, True]
    areas = np.array([1, 1, 9, 0, 0, 4, 5, 0], dtype=float)
    assert D.keep_one(g, U, areas)[[2, 6]].all()


def test_allocation_equal_shares_capped_and_redistributed(core_package):
    S = core_package.subsets
    q = S.allocate([100, 5, 40, 2], 60)
    assert q.tolist() == [27, 5, 26, 2] and q.sum() == 60
    assert S.allocate([3, 3, 3], 9).tolist() == [3, 3, 3]
    with pytest.raises(S.ParamError):
        S.allocate([1, 2], 4)
    rows, per = S.select(
        np.repeat([0, 1, 2], [50, 10, 40]),
        30,
        "spread",
        features=np.random.default_rng(0).normal(size=(100, 4)),
    )
    assert len(set(rows.tolist())) == 30
    assert {c: t for c, (_, t, _) in per.items()} == {0: 10, 1: 10, 2: 10}
    assert all(parts is None for *_, parts in per.values())


def _cluster_with_a_minority(rng):
    """Cluster 0: 90 rows around one point and 10 around a far one (the
    most typical rows are the majority's); cluster 1: 50 rows."""
    centres = np.array([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    group = np.repeat([0, 1, 2], [90, 10, 50])
    X = centres[group] + rng.normal(scale=0.3, size=(150, 3))
    typicality = np.where(group == 0, 1.0, 0.0) + rng.random(150) * 0.1
    return group, np.where(group == 2, 1, 0), X, typicality


@pytest.mark.parametrize("order", ["typical", "random"])
def test_sub_clusters_share_a_quota_among_groups(core_package, order):
    S = core_package.subsets
    group, clusters, X, typ = _cluster_with_a_minority(
        np.random.default_rng(0)
    )
    flat, per = S.select(clusters, 20, order, typ, X, seed=1)
    rows, per2 = S.select(clusters, 20, order, typ, X, seed=1, sub_clusters=2)
    assert (group[flat] == 1).sum() <= 2  # swamped by the 90
    assert np.bincount(group[rows], minlength=3).tolist() == [5, 5, 10]
    assert per2[0] == (100, 10, [(90, 5), (10, 5)])
    assert per2[1][:2] == (50, 10)
    assert sum(t for _, t in per2[1][2]) == 10
    # a small part gives what it has, the rest goes to the other parts
    rows, per3 = S.select(clusters, 60, order, typ, X, sub_clusters=2)
    assert (group[rows] == 1).sum() == 10
    assert per3[0][1] == 30 and sum(t for _, t in per3[0][2]) == 30


def test_sub_clusters_need_features_and_a_whole_number(core_package):
    S = core_package.subsets
    with pytest.raises(S.ParamError, match="needs the embeddings"):
        S.select([0, 0, 1, 1], 2, "typical", sub_clusters=2)
    for bad in (0, 1.5, True):
        with pytest.raises(S.ParamError, match="sub_clusters"):
            S.select(
                [0, 1], 2, "typical", features=np.eye(2), sub_clusters=bad
            )
    parts = S.split_cluster(np.eye(3, dtype=np.float32), 5)
    assert sorted(len(p) for p in parts) == [1, 1, 1]


@pytest.mark.parametrize("order", ["spread", "typical", "random"])
@pytest.mark.parametrize("sub_clusters", [1, 3])
def test_identical_embeddings_never_take_a_row_twice(
    core_package, order, sub_clusters
):
    """Exact duplicates (identical vectors) inside a cluster: every order
    takes distinct rows, as many as asked."""
    S = core_package.subsets
    rng = np.random.default_rng(3)
    X = np.vstack([np.ones((12, 4)), rng.normal(size=(3, 4))])
    X = X.astype(np.float32)
    clusters = np.zeros(len(X), dtype=int)
    for n in (4, 14, 15):
        rows, _ = S.select(
            clusters, n, order, None, X, sub_clusters=sub_clusters
        )
        assert len(rows) == n and len(set(rows.tolist())) == n, rows
    assert len(set(S.farthest_points(np.ones((6, 2)), 6).tolist())) == 6
