"""k-means restarts: ARI and fit time over seeds, with one start and with
the default restarts, side by side on the clustering benchmark's mixture.

Usage::

    python bench/bench_kmeans_restarts.py [--n 100000] [--seeds 51,52,53]

The fit alone (no database): ``core.methods`` k-means with k=50 on L2
normalised 512-d vectors of a 50-component Gaussian mixture.
"""

import argparse
import time

import numpy as np
from sklearn.metrics import adjusted_rand_score

import benchlib


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seeds", default="51,52,53")
    args = parser.parse_args()
    methods = benchlib.core("methods")
    default = methods.METHODS.resolve("kmeans", {})["n_init"]
    X, y = benchlib.sibling("bench_clustering").mixture(args.n)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    print(f"| seed | n_init=1 ARI | s | n_init={default} ARI | s |")
    print("|---|---|---|---|---|")
    for seed in map(int, args.seeds.split(",")):
        row = [str(seed)]
        for n_init in (1, default):
            km = methods.METHODS.get("kmeans")(
                n_clusters=50, n_init=n_init, random_state=seed
            )
            t = time.perf_counter()
            labels = km.fit(X).labels_
            row += [
                f"{adjusted_rand_score(y, labels):.3f}",
                f"{time.perf_counter() - t:.2f}",
            ]
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
