"""Near duplicates and subsets: end-to-end time, peak memory and recall.

Synthetic 512-d embeddings (the clustering benchmark's mixture of 50
Gaussian components) with 2% planted near-duplicate pairs (a copy of a
row plus noise, cosine similarity about 0.95-0.999) are stored in a
FiftyOne dataset on a private mongod (the test harness's); each case runs
in a fresh process, whose peak resident memory (VmHWM) is reported.

Usage::

    python bench/bench_duplicates.py dup 100000        # ours, end to end
    python bench/bench_duplicates.py fo 20000          # ours and FiftyOne's
    python bench/bench_duplicates.py subset 1000000    # select 10,000
    python bench/bench_duplicates.py dup+subset 1000000  # one dataset

Files do not exist (``/bench/<i>.jpg``): the exact-duplicate stage stats
every path and finds nothing to hash.
"""

import argparse
import json
import os
import time

import benchlib


def planted(n, d=512, seed=0):
    """The mixture with 2% of its rows replaced by near copies of others:
    ``(X, pairs)``."""
    import numpy as np

    bench = benchlib.sibling("bench_clustering")
    X, _ = bench.mixture(n, d, seed=seed)
    rng = np.random.default_rng(seed + 1)
    m = n // 50
    rows = rng.choice(n, 2 * m, replace=False)
    a, b = rows[:m], rows[m:]
    scale = rng.uniform(0.03, 0.3, (m, 1)).astype(np.float32)
    X[b] = X[a] + rng.normal(size=(m, d)).astype(np.float32) * 0.1 * scale
    return X, np.stack([a, b], axis=1)


def populate(name, n):
    import numpy as np

    import fiftyone as fo

    X, pairs = planted(n)
    ds = fo.Dataset(name)
    ds.add_sample_field("emb", fo.VectorField)
    ds.add_sample_field("row", fo.IntField)
    ds.persistent = True
    benchlib.insert_samples(ds, X, row=range(n))
    np.save(f"/tmp/{name}_pairs.npy", pairs)
    return ds


def _group_of_row(ds, field):
    import numpy as np

    rows, groups = ds.values(["row", field])
    out = np.full(len(rows), -1)
    for r, g in zip(rows, groups):
        out[r] = -1 if g is None else g
    return out


def case_dup(name, threshold=None):
    import numpy as np

    import fiftyone as fo

    api = benchlib.plugin_api("find_duplicates")
    ds = fo.load_dataset(name)
    t = time.perf_counter()
    out = api.find_duplicates(ds, "bench", "emb", threshold=threshold)
    wall = time.perf_counter() - t
    peak = benchlib.vm_hwm_mb()
    g = _group_of_row(ds, "bench_group")
    pairs = np.load(f"/tmp/{name}_pairs.npy")
    recall = float(
        np.mean((g[pairs[:, 0]] >= 0) & (g[pairs[:, 0]] == g[pairs[:, 1]]))
    )
    return dict(
        case="ours",
        n=len(ds),
        wall_s=round(wall, 1),
        peak_mb=round(peak),
        threshold=out["threshold"],
        groups=out["n_groups"],
        pairs=out["n_pairs"],
        planted_recall=round(recall, 4),
        timings=out["timings"],
        load=os.getloadavg(),
    )


def case_fo(name, threshold):
    import fiftyone as fo
    import fiftyone.brain as fob

    ds = fo.load_dataset(name)
    t = time.perf_counter()
    index = fob.compute_near_duplicates(
        ds, threshold=1 - threshold, embeddings="emb"
    )
    wall = time.perf_counter() - t
    fo_pairs = [(k, d) for k, v in index.neighbors_map.items() for d, _ in v]
    ids, groups = ds.values(["id", "bench_group"])
    group = dict(zip(ids, groups))
    same = sum(
        1 for a, b in fo_pairs if group[a] is not None and group[a] == group[b]
    )
    return dict(
        case="fiftyone",
        n=len(ds),
        wall_s=round(wall, 1),
        peak_mb=round(benchlib.vm_hwm_mb()),
        fo_pairs=len(fo_pairs),
        fo_duplicates=len(index.duplicate_ids),
        share_of_fo_pairs_we_group=round(same / max(1, len(fo_pairs)), 4),
        load=os.getloadavg(),
    )


# (order, sub_clusters) of the select_subset cases
SUBSET_CASES = (("typical", 1), ("spread", 1), ("typical", 3), ("spread", 3))


def case_subset(name, order, sub_clusters):
    import fiftyone as fo

    api = benchlib.plugin_api("find_duplicates")
    ds = fo.load_dataset(name)
    cluster_s = None
    if "km" not in api.list_clustering_runs(ds):
        # a quick k-means (one start, a few iterations): the run is the
        # input here, not what is measured
        t = time.perf_counter()
        api.compute_clusters(
            ds,
            "km",
            "emb",
            method="kmeans",
            kmeans__n_clusters=100,
            kmeans__n_init=1,
            kmeans__max_iter=5,
        )
        cluster_s = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    out = api.select_subset(
        ds, "km", 10000, order=order, sub_clusters=sub_clusters
    )
    wall = time.perf_counter() - t
    return dict(
        case=f"subset-{order}-parts-{sub_clusters}",
        n=len(ds),
        wall_s=round(wall, 1),
        peak_mb=round(benchlib.vm_hwm_mb()),
        clusters=len(out["clusters"]),
        clustering_s=cluster_s,
        load=os.getloadavg(),
    )


def _child(args):
    out = benchlib.run_child(__file__, "--run", json.dumps(args))
    print(json.dumps(out), flush=True)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "what", nargs="?", help="dup, fo or subset; dup+subset: both"
    )
    parser.add_argument("n", nargs="?", type=int)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    harness = benchlib.harness()

    if args.run:
        a = json.loads(args.run)
        os.environ.update(a["env"])
        fn = dict(dup=case_dup, fo=case_fo, subset=case_subset)[a["case"]]
        out = fn(a["name"], *a.get("args", []))
        print("RESULT " + json.dumps(out), flush=True)
        return
    harness.start()
    import fiftyone as fo

    name = f"bench-dup-{args.n}"
    t = time.perf_counter()
    populate(name, args.n)
    print(
        f"populated {args.n:,} in {time.perf_counter() - t:.0f} s", flush=True
    )
    env = dict(harness.TEST_ENV)
    try:
        what = args.what.split("+")
        if "dup" in what or "fo" in what:
            ours = _child(dict(case="dup", name=name, env=env))
        if "fo" in what:
            _child(
                dict(case="fo", name=name, env=env, args=[ours["threshold"]])
            )
        if "subset" in what:
            for order, parts in SUBSET_CASES:
                _child(
                    dict(
                        case="subset", name=name, env=env, args=[order, parts]
                    )
                )
    finally:
        fo.delete_dataset(name)
        harness.stop()


if __name__ == "__main__":
    main()
