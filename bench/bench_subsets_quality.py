"""Label balance of ``select_subset``'s choice on the sklearn digits, as
the label entropy of 300 selected samples over log(10).

Cases: the digits made imbalanced (digit c keeps (c + 1) / 10 of its
images, about 990 in all; subsampling seeds 51, 52, 53, as the
integration test's fixture does it) clustered with the plugin's defaults
(L2 normalisation, UMAP to 5 dimensions, HDBSCAN with its automatic
``min_cluster_size``), and all 1,797 digits (balanced) clustered the same
way and by k-means with k=10. No database: ``core`` on arrays, as the API
calls it (typicality from the run's score, features the unit pixel
vectors). Each order and ``sub_clusters`` value is run with the selection
seeds 51-55: the first number is seed 51 (what the API's default seed
gives), the second the mean.

``--neighbours 10,20,30,40`` instead varies the clustering: for each
UMAP neighbour count, the standardised digits' ARI (as
``tests/integration/test_quality.py`` measures it) and the default
selection's balance (spread, 3 parts, seed 51) on the three
imbalanced sets, over UMAP seeds 51, 0 and 1.

``--bound`` prints, per imbalanced set and UMAP seed, the highest balance
any choice within the clusters could reach: the clusters' equal shares
fixed, the members chosen knowing their digits (a concave maximisation
over the shares' digit counts, solved with SLSQP).

Usage::

    python bench/bench_subsets_quality.py
    python bench/bench_subsets_quality.py --neighbours 10,20,30,40
    python bench/bench_subsets_quality.py --bound
"""

import argparse


import numpy as np
from sklearn.datasets import load_digits

import benchlib

SELECTION_SEEDS = (51, 52, 53, 54, 55)


reduce_, methods, summary, subsets = benchlib.core(
    "reduce", "methods", "summary", "subsets"
)


def imbalanced(seed):
    d = load_digits()
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(10):
        idx = np.flatnonzero(d.target == c)
        n = int(round(len(idx) * (c + 1) / 10))
        keep += list(rng.choice(idx, n, replace=False))
    keep = np.sort(keep)
    return d.data[keep].astype(np.float32), d.target[keep]


def cluster(X, method, umap_params=None, **params):
    """``(labels, typicality, features)`` as the API has them."""
    reduce = "umap" if method == "hdbscan" else "none"
    umap = {}
    if reduce == "umap":
        umap = reduce_.REDUCERS.get("umap")(**(umap_params or {})).params_
    Z, _ = reduce_.preprocess(X.copy(), True, reduce, umap)
    fitted = methods.METHODS.get(method)(**params).fit(Z)
    scores = summary.summarize(X.copy(), Z, fitted.labels_, fitted)["scores"]
    higher = methods.SCORE_KINDS[fitted.score_kind].higher_is_typical
    typicality = np.nan_to_num(scores if higher else -scores, nan=-np.inf)
    F = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    return fitted.labels_, typicality, F


def entropy(y, rows):
    counts = np.bincount(y[rows], minlength=10)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(10)), counts


def cases():
    out = {}
    for seed in (51, 52, 53):
        X, y = imbalanced(seed)
        out[f"imbalanced {seed}"] = (cluster(X, "hdbscan"), y)
    d = load_digits()
    X = d.data.astype(np.float32)
    out["balanced, HDBSCAN"] = (cluster(X, "hdbscan"), d.target)
    out["balanced, k-means 10"] = (
        cluster(X, "kmeans", n_clusters=10),
        d.target,
    )
    return out


def main():
    data = cases()
    print(
        "| order | sub_clusters | "
        + " | ".join(data)
        + " | digits 0-9 (imbalanced 51) |"
    )
    print("|---" * (len(data) + 3) + "|")
    for order in ("spread", "random", "typical"):
        for k in (1, 2, 3, 4, 5):
            cells, digits = [], ""
            for name, ((labels, typ, F), y) in data.items():
                es = []
                for s in SELECTION_SEEDS:
                    rows, _ = subsets.select(labels, 300, order, typ, F, s, k)
                    e, counts = entropy(y, rows)
                    es.append(e)
                    if name == "imbalanced 51" and s == 51:
                        digits = ", ".join(map(str, counts))
                cells.append(f"{es[0]:.4f} / {np.mean(es):.4f}")
            print(f"| {order} | {k} | " + " | ".join(cells) + f" | {digits} |")


def neighbours(counts, umap_seeds=(51, 0, 1)):
    """The ARI and the default selection's balance per neighbour count."""
    from sklearn.metrics import adjusted_rand_score
    from sklearn.preprocessing import StandardScaler

    d = load_digits()
    Xs = StandardScaler().fit_transform(d.data).astype(np.float32)
    sets = [imbalanced(seed) for seed in (51, 52, 53)]
    print("| neighbours | ARI per UMAP seed | balance: min / mean | per set |")
    print("|---|---|---|---|")
    for nn in counts:
        params = [dict(n_neighbors=nn, random_state=rs) for rs in umap_seeds]
        aris = [
            adjusted_rand_score(d.target, cluster(Xs, "hdbscan", p)[0])
            for p in params
        ]
        balance = np.empty((len(sets), len(params)))
        for i, (X, y) in enumerate(sets):
            for j, p in enumerate(params):
                labels, typ, F = cluster(X, "hdbscan", p)
                rows, _ = subsets.select(labels, 300, "spread", typ, F, 51, 3)
                balance[i, j] = entropy(y, rows)[0]
        per_set = "; ".join(
            " ".join(f"{e:.4f}" for e in row) for row in balance
        )
        print(
            f"| {nn} | {' '.join(f'{a:.3f}' for a in aris)} | "
            f"{balance.min():.4f} / {balance.mean():.4f} | {per_set} |"
        )


def best_possible(labels, y, n=300):
    """The highest label entropy (over log(10)) of ``n`` rows taken with
    the clusters' quotas of :func:`core.subsets.allocate`, and the digit
    counts that reach it (fractional: the relaxation's optimum)."""
    from scipy.optimize import minimize

    ids = np.unique(labels)
    comp = np.array([np.bincount(y[labels == c], minlength=10) for c in ids])
    quota = subsets.allocate(comp.sum(1), n)
    cells = np.flatnonzero(comp.ravel())  # (cluster, digit) pairs present

    def counts(v):
        x = np.zeros(comp.size)
        x[cells] = v
        return x.reshape(comp.shape)

    def negative_entropy(v):
        p = np.clip(counts(v).sum(0) / n, 1e-12, None)
        return float((p * np.log(p)).sum())

    fill = [
        {"type": "eq", "fun": lambda v, c=c: counts(v)[c].sum() - quota[c]}
        for c in range(len(ids))
    ]
    start = (comp / comp.sum(1, keepdims=True) * quota[:, None]).ravel()
    best = minimize(
        negative_entropy,
        start[cells],
        method="SLSQP",
        bounds=[(0, comp.ravel()[i]) for i in cells],
        constraints=fill,
        options=dict(maxiter=500, ftol=1e-12),
    )
    return -best.fun / np.log(10), counts(best.x).sum(0)


def bound(umap_seeds=(51, 0, 1)):
    print("| set | UMAP seed | best possible | its digit counts 0-9 |")
    print("|---|---|---|---|")
    for seed in (51, 52, 53):
        X, y = imbalanced(seed)
        for rs in umap_seeds:
            labels = cluster(X, "hdbscan", dict(random_state=rs))[0]
            h, t = best_possible(labels, y)
            digits = ", ".join(f"{c:.1f}" for c in t)
            print(f"| imbalanced {seed} | {rs} | {h:.4f} | {digits} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--neighbours", help="e.g. 10,20,30,40")
    parser.add_argument("--bound", action="store_true")
    args = parser.parse_args()
    if args.bound:
        bound()
    elif args.neighbours:
        neighbours([int(n) for n in args.neighbours.split(",")])
    else:
        main()
