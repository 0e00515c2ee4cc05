"""Clustering benchmark: end-to-end time, peak memory and quality.

Synthetic 512-d embeddings (a mixture of 50 Gaussian components) are stored
in a FiftyOne dataset; each case then runs ``api.compute_clusters`` end to
end (read, reduce, fit, write labels and scores, save the run) in a fresh
process, whose peak resident memory is reported.

Usage::

    python bench/bench_clustering.py [--cases kmeans-100k,hdbscan-10k,...]

Cases: kmeans-100k, hdbscan-10k, hdbscan-100k, kmeans-1m, and
projection-1m (``api.compute_projection`` of a 1M-sample view).

Uses FiftyOne's configured database; datasets are deleted afterwards.
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import benchlib

REPO = benchlib.REPO

CASES = {
    "kmeans-100k": (100_000, dict(method="kmeans", kmeans__n_clusters=50)),
    "hdbscan-10k": (10_000, dict(method="hdbscan")),
    "hdbscan-100k": (100_000, dict(method="hdbscan")),
    "kmeans-1m": (1_000_000, dict(method="kmeans", kmeans__n_clusters=100)),
    # not a clustering: a 2-D UMAP projection of a 1M-sample view, end to end
    "projection-1m": (1_000_000, None),
}


def mixture(n, d=512, k=50, seed=0):
    """n x d float32 points from k Gaussian components, and their labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)).astype(np.float32) * 0.115
    y = rng.integers(0, k, n)
    X = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        X[s:e] = centers[y[s:e]] + rng.normal(size=(e - s, d)).astype(
            np.float32
        ) * np.float32(0.1)
    return X, y


def populate(name, n):
    """Creates dataset ``name`` with ``n`` samples and an ``emb`` field,
    inserting the documents in bulk."""
    import fiftyone as fo

    X, y = mixture(n)
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    ds = fo.Dataset(name)
    ds.add_sample_field("emb", fo.VectorField)
    ds.add_sample_field("truth", fo.IntField)
    benchlib.insert_samples(ds, X, truth=[int(v) for v in y])
    del X
    return ds


def run_case(name, params):
    """Runs one case in this process; prints a JSON line of results."""
    import importlib

    from sklearn.metrics import adjusted_rand_score

    import fiftyone as fo
    import fiftyone.operators as foo

    foo.get_operator("@curate/clustering/compute_clusters")  # load plugin
    api = importlib.import_module(
        "fiftyone.plugins.orgs.curate.clustering.api"
    )
    ds = fo.load_dataset(name)
    base = benchlib.vm_hwm_mb()
    t = time.perf_counter()
    if params is None:
        out = api.compute_projection(ds, "bench_umap", embeddings_field="emb")
        wall = time.perf_counter() - t
        print(
            "RESULT "
            + json.dumps(
                dict(
                    wall_s=round(wall, 1),
                    peak_mb=round(benchlib.vm_hwm_mb()),
                    rss_before_mb=round(base),
                    ari=None,
                    n_clusters=None,
                    noise=None,
                    timings=out["timings"],
                )
            )
        )
        return
    out = api.compute_clusters(ds, "bench", "emb", **params)
    wall = time.perf_counter() - t
    peak = benchlib.vm_hwm_mb()
    truth, labels = ds.values(["truth", "bench_cluster"])
    print(
        "RESULT "
        + json.dumps(
            dict(
                wall_s=round(wall, 1),
                peak_mb=round(peak),
                rss_before_mb=round(base),
                ari=round(adjusted_rand_score(truth, labels), 3),
                n_clusters=out["n_clusters"],
                noise=round(out["metrics"]["noise_fraction"], 3),
                timings=out["timings"],
            )
        )
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="kmeans-100k,hdbscan-10k")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        case = CASES[args.run]
        run_case(f"curate-bench-{args.run}", case[1])
        return

    benchlib.link_plugin()

    import fiftyone as fo

    rows = []
    for case in args.cases.split(","):
        n, params = CASES[case]
        name = f"curate-bench-{case}"
        t = time.perf_counter()
        populate(name, n)
        print(
            f"{case}: populated {n:,} samples in {time.perf_counter() - t:.0f} s"
        )
        proc = subprocess.run(
            [sys.executable, __file__, "--run", case],
            capture_output=True,
            text=True,
        )
        fo.delete_dataset(name)
        line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")]
        if proc.returncode or not line:
            print(proc.stderr[-3000:])
            raise SystemExit(f"{case} failed")
        result = json.loads(line[0][len("RESULT ") :])
        rows.append((case, result))
        print(case, json.dumps(result))

    print()
    print(
        "| case | wall (s) | peak RSS (MB) | ARI | clusters | noise | stages (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for case, r in rows:
        t = r["timings"]
        stages = ", ".join(
            f"{k[:-2]} {v:.1f}" for k, v in t.items() if k != "total_s"
        )
        print(
            f"| {case} | {r['wall_s']} | {r['peak_mb']} | {r['ari']} | "
            f"{r['n_clusters']} | {r['noise']} | {stages} |"
        )


if __name__ == "__main__":
    main()
