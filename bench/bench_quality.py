"""Clustering quality on the scikit-learn digits for several UMAP seeds.

The 1,797 digits as standardised pixel vectors, through the same ``core``
code that ``api.compute_clusters`` runs, with its defaults: HDBSCAN after
the default UMAP reduction, k-means with automatic k after a UMAP
reduction, and k-means with automatic k on the normalised vectors. One more
column shows HDBSCAN without the default L2 normalisation (``normalize=
False, umap__metric="euclidean", hdbscan__min_samples=5``).

``--diagnose`` prints, instead, what limits HDBSCAN with the default L2
normalisation: the 10-nearest-neighbour label agreement of the
standardised pixels in Euclidean and in cosine geometry (the graph UMAP
starts from), and the same HDBSCAN after a plain ``umap.UMAP`` (its own
neighbour search, initialisation and epochs) as a reference pipeline.

Usage::

    python bench/bench_quality.py [--seeds 51,0,1] [--diagnose]
"""

import argparse
import importlib
import importlib.util

import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

import benchlib


def auto_kmeans(methods, Z):
    p = methods.METHODS.resolve("kmeans", {})
    auto_k = importlib.import_module("_curate_core.auto_k")
    k, _ = auto_k.choose_k("kmeans", p, Z)
    return k, methods.METHODS.get("kmeans")(**{**p, "n_clusters": k}).fit(Z)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="51,0,1")
    parser.add_argument("--diagnose", action="store_true")
    args = parser.parse_args()
    methods, reduce = benchlib.core("methods", "reduce")
    digits = load_digits()
    X = StandardScaler().fit_transform(digits.data).astype(np.float32)
    y = digits.target
    seeds = list(map(int, args.seeds.split(",")))
    if args.diagnose:
        diagnose(methods, reduce, X, y, seeds)
        return

    print(
        "| UMAP seed | hdbscan defaults | kmeans auto k + umap | "
        "kmeans auto k, no reduction | hdbscan, not normalised |"
    )
    print("|---|---|---|---|---|")
    for seed in seeds:
        params = reduce.REDUCERS.resolve("umap", {"random_state": seed})
        Z, _ = reduce.preprocess(X.copy(), True, "umap", params)
        hdb = methods.METHODS.get("hdbscan")().fit(Z)
        noise = (hdb.labels_ == -1).mean()
        k, km = auto_kmeans(methods, Z)
        k0, km0 = auto_kmeans(methods, reduce.l2_normalize(X.copy()))
        raw = reduce.REDUCERS.resolve(
            "umap", {"random_state": seed, "metric": "euclidean"}
        )
        Z1, _ = reduce.preprocess(X.copy(), False, "umap", raw)
        hdb1 = methods.METHODS.get("hdbscan")(min_samples=5).fit(Z1)
        print(
            f"| {seed} | ARI {adjusted_rand_score(y, hdb.labels_):.3f} "
            f"({len(set(hdb.labels_)) - 1} clusters, noise {noise:.1%}) | "
            f"k={k}, ARI {adjusted_rand_score(y, km.labels_):.3f} | "
            f"k={k0}, ARI {adjusted_rand_score(y, km0.labels_):.3f} | "
            f"ARI {adjusted_rand_score(y, hdb1.labels_):.3f} |"
        )


def diagnose(methods, reduce, X, y, seeds):
    import umap
    from sklearn.neighbors import NearestNeighbors

    print("| geometry | 10-NN agreement | per digit 0-9 | 8s' edges to 1s |")
    print("|---|---|---|---|")
    for name, F in (
        ("Euclidean", X),
        ("cosine (L2-normalised)", reduce.l2_normalize(X.copy())),
    ):
        nn = NearestNeighbors(n_neighbors=11).fit(F)
        J = y[nn.kneighbors(F, return_distance=False)[:, 1:]]
        same = J == y[:, None]
        per = " ".join(f"{same[y == c].mean():.3f}" for c in range(10))
        print(
            f"| {name} | {same.mean():.3f} | {per} | "
            f"{(J[y == 8] == 1).sum()} |"
        )

    print("\n| UMAP seed | plain umap.UMAP (5-D, 10 neighbours) + HDBSCAN |")
    print("|---|---|")
    mcs = max(10, int(round(np.sqrt(len(X)))))
    for seed in seeds:
        Z = umap.UMAP(
            n_components=5,
            n_neighbors=10,
            min_dist=0.0,
            metric="cosine",
            random_state=seed,
        ).fit_transform(reduce.l2_normalize(X.copy()))
        labels = methods.METHODS.get("hdbscan")(min_cluster_size=mcs)
        labels = labels.fit(Z).labels_
        print(f"| {seed} | ARI {adjusted_rand_score(y, labels):.3f} |")


if __name__ == "__main__":
    main()
