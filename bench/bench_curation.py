"""Label audit and outlier scores: end-to-end time, stages and peak memory,
side by side with FiftyOne Brain's ``compute_uniqueness`` on the same
embeddings.

The clustering benchmark's synthetic 512-d embeddings (50 Gaussian
components) with a 50-class label field (the component, 5% flipped to
another class) and a k-means run (k=50). Each timed call runs in a fresh
process whose peak resident memory (VmHWM) is reported; stages are the
times between the progress labels the call reports.

Usage::

    python bench/bench_curation.py [--sizes 20000,100000] [--uniqueness 20000]
        [--repeat 3] [--reuse]

``--uniqueness`` lists the sizes at which ``compute_uniqueness`` also runs
(it is slow: 17 s at 20,000 and 55 s at 40,000 on a 2-core machine).
Uses FiftyOne's configured database; datasets are deleted afterwards.
"""

import argparse
import importlib
import importlib.util
import json
import os
import time

os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import benchlib

REPO = benchlib.REPO
PLUGIN_API = "fiftyone.plugins.orgs.curate.clustering.api"


def prepare(name, n):
    """The dataset, its label field and the clustering run (not timed)."""
    import numpy as np

    import fiftyone as fo
    import fiftyone.operators as foo

    ds = benchlib.sibling("bench_clustering").populate(name, n)
    truth = np.array(ds.values("truth"))
    rng = np.random.default_rng(51)
    flip = rng.random(n) < 0.05
    labels = np.where(flip, (truth + rng.integers(1, 50, n)) % 50, truth)
    ds.add_sample_field("label", fo.StringField)
    coll = ds._sample_collection
    from pymongo import UpdateOne

    ids = ds.values("_id")
    for s in range(0, n, 50_000):
        coll.bulk_write(
            [
                UpdateOne({"_id": i}, {"$set": {"label": f"c{v}"}})
                for i, v in zip(ids[s : s + 50_000], labels[s : s + 50_000])
            ],
            ordered=False,
        )
    foo.get_operator("@curate/clustering/compute_clusters")
    api = importlib.import_module(PLUGIN_API)
    api.compute_clusters(
        ds, "b", "emb", method="kmeans", kmeans__n_clusters=50
    )
    return flip


def prepared(name, n):
    """The flipped-label mask of a dataset :func:`prepare` made earlier."""
    import numpy as np

    import fiftyone as fo

    if (
        not fo.dataset_exists(name)
        or "b" not in fo.load_dataset(name).list_runs()
    ):
        return prepare(name, n)
    ds = fo.load_dataset(name)
    truth, label = ds.values(["truth", "label"])
    return np.array([f"c{t}" != v for t, v in zip(truth, label)])


def run_case(name, what):
    """One timed call in this process; prints a JSON line."""
    import fiftyone as fo
    import fiftyone.operators as foo

    foo.get_operator("@curate/clustering/compute_clusters")
    api = importlib.import_module(PLUGIN_API)
    ds = fo.load_dataset(name)
    base = benchlib.vm_hwm_mb()
    stages = benchlib.Stages()
    t = time.perf_counter()
    if what == "audit":
        out = api.audit_labels(ds, "b", "label", progress=stages)
        extra = dict(n_suspects=out["n_suspects"])
    elif what == "outliers":
        api.compute_outliers(ds, "b", progress=stages)
        extra = {}
    else:
        import fiftyone.brain as fob

        fob.compute_uniqueness(ds, embeddings="emb")
        extra = {}
    end = time.perf_counter()
    print(
        "RESULT "
        + json.dumps(
            dict(
                wall_s=round(end - t, 1),
                peak_mb=round(benchlib.vm_hwm_mb()),
                rss_before_mb=round(base),
                stages=stages.timings(end),
                **extra,
            )
        )
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--uniqueness", default="20000")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each call (fresh processes); the median is shown",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse a dataset an interrupted run of this script prepared",
    )
    parser.add_argument("--run", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_case(*args.run)
        return

    benchlib.link_plugin()
    import numpy as np

    import fiftyone as fo

    with_uniqueness = {int(x) for x in args.uniqueness.split(",") if x}
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        name = f"curate-bench-curation-{n}"
        t = time.perf_counter()
        flip = prepared(name, n) if args.reuse else prepare(name, n)
        print(f"{n:,}: prepared in {time.perf_counter() - t:.0f} s")
        whats = ["audit", "outliers"]
        if n in with_uniqueness:
            whats.append("uniqueness")
        for what in whats:
            tries = sorted(
                (
                    benchlib.run_child(__file__, "--run", name, what)
                    for _ in range(args.repeat)
                ),
                key=lambda r: r["wall_s"],
            )
            r = tries[len(tries) // 2]  # the median by wall time
            r["walls_s"] = [t["wall_s"] for t in tries]
            if what == "audit":
                ds = fo.load_dataset(name)
                ds.reload()  # written by another process
                s = np.array(ds.values("b_label_suspicion"), dtype=float)
                top = np.argsort(-s)[: flip.sum()]
                r["flipped_found"] = round(float(flip[top].mean()), 3)
            rows.append((n, what, r))
            print(n, what, json.dumps(r))
        fo.delete_dataset(name)

    print()
    print("| samples | call | wall (s) | peak RSS (MB) | stages (s) | notes |")
    print("|---|---|---|---|---|---|")
    for n, what, r in rows:
        stages = ", ".join(f"{k} {v}" for k, v in r["stages"].items())
        notes = ""
        if "flipped_found" in r:
            notes = (
                f"{r['n_suspects']:,} suspects; top-m holds "
                f"{r['flipped_found']:.1%} of the flipped labels"
            )
        walls = " / ".join(str(w) for w in r["walls_s"])
        print(
            f"| {n:,} | {what} | {r['wall_s']} ({walls}) | "
            f"{r['peak_mb']:,} | {stages} | {notes} |"
        )


if __name__ == "__main__":
    main()
