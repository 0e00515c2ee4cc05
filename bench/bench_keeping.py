"""Keeping clusters up with the dataset: ``assign_clusters`` and
``compare_clustering_runs`` end to end (database reads and writes
included), their peak memory, and the quality of assignments and of the
stability measure.

Speed cases use the clustering benchmark's synthetic 512-d embeddings (50
Gaussian components): a run is computed on the first ``n_fit`` samples of
a dataset (not timed), and the timed call, in a fresh process whose peak
resident memory (VmHWM) is reported, assigns every other sample to it:

- ``assign-kmeans-100k``: k-means (k=50) on 100,000, 100,000 new;
- ``assign-hdbscan-100k``: HDBSCAN with its UMAP reduction on 100,000,
  100,000 new (each placed in the stored UMAP layout);
- ``assign-kmeans-1m``: k-means (k=50) on 100,000, 1,000,000 new; then a
  second k-means run (k=60, not timed) on the 1,000,000 and
  ``compare-1m``: the two runs compared over those 1,000,000 samples.

``digits``: scikit-learn's 1,797 digits (standardised pixels), 80% fitted
and 20% held out: the share of fitted and of assigned samples in a
cluster of their own digit (clusters named by their fitted members'
majority digit), the self-assignment rate (fitted samples assigned again
get their own cluster back), and per-cluster stability of k-means with
k=10 and k=14 (10 resamples).

Usage::

    python bench/bench_keeping.py [--cases assign-kmeans-100k,...,digits]

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
PLUGIN = "fiftyone.plugins.orgs.curate.clustering"

KMEANS = dict(method="kmeans", kmeans__n_clusters=50)
# case: (samples fitted, samples new, the run's parameters)
CASES = {
    "assign-kmeans-100k": (100_000, 100_000, KMEANS),
    "assign-hdbscan-100k": (100_000, 100_000, dict(method="hdbscan")),
    "assign-kmeans-1m": (100_000, 1_000_000, KMEANS),
}


def run_case(name, what):
    """One timed call in this process; prints a JSON line."""
    import fiftyone as fo

    api = benchlib.plugin_api()
    ds = fo.load_dataset(name)
    base = benchlib.vm_hwm_mb()
    stages = benchlib.Stages()
    t = time.perf_counter()
    if what == "compare":
        out = api.compare_clustering_runs(ds, "fit", "other", stages)
        extra = dict(
            n_samples=out["n_samples"],
            ari=round(out["ari"], 3),
            ami=round(out["ami"], 3),
        )
    else:
        out = api.assign_clusters(ds, "fit", progress=stages)
        extra = dict(n_assigned=out["n_assigned"], n_novel=out["n_novel"])
    end = time.perf_counter()
    result = dict(
        wall_s=round(end - t, 1),
        peak_mb=round(benchlib.vm_hwm_mb()),
        rss_before_mb=round(base),
        stages=stages.timings(end),
        **extra,
    )
    print("RESULT " + json.dumps(result))


def speed_case(case):
    """Populates, fits the run (not timed), times the assignment (and, at
    1M, the comparison); returns table rows."""
    import fiftyone as fo

    n_fit, n_new, params = CASES[case]
    name = f"curate-bench-keeping-{case}"
    t = time.perf_counter()
    ds = benchlib.sibling("bench_clustering").populate(name, n_fit + n_new)
    api = benchlib.plugin_api()
    api.compute_clusters(ds.limit(n_fit), "fit", "emb", **params)
    print(f"{case}: prepared in {time.perf_counter() - t:.0f} s", flush=True)
    rows = [(case, benchlib.run_child(__file__, "--run", name, "assign"))]
    print(case, json.dumps(rows[-1][1]), flush=True)
    if n_new >= 1_000_000:
        t = time.perf_counter()
        ds.reload()
        api.compute_clusters(
            ds.skip(n_fit),
            "other",
            "emb",
            method="kmeans",
            kmeans__n_clusters=60,
        )
        print(f"second run in {time.perf_counter() - t:.0f} s", flush=True)
        rows.append(
            (
                "compare-1m",
                benchlib.run_child(__file__, "--run", name, "compare"),
            )
        )
        print("compare-1m", json.dumps(rows[-1][1]), flush=True)
    fo.delete_dataset(name)
    return rows


def _digits_dataset(name):
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    import fiftyone as fo

    d = load_digits()
    X = StandardScaler().fit_transform(d.data).astype(np.float32)
    split = np.where(np.random.default_rng(0).random(len(X)) < 0.8, 1, 0)
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    ds = fo.Dataset(name)
    ds.add_samples(
        [
            fo.Sample(filepath=f"/x/{i}.png", digit=int(t), fitted=bool(s))
            for i, (t, s) in enumerate(zip(d.target, split))
        ]
    )
    ds.set_values("emb", list(X))
    return ds, X, split.astype(bool)


def _own_digit_shares(ds, field):
    """Shares of fitted and of assigned samples in a cluster of their own
    digit (clusters named by their fitted members' majority digit)."""
    import numpy as np
    from fiftyone import ViewField as F

    fit = ds.match(F("fitted"))
    cl, dg = fit.values(field), fit.values("digit")
    major = {}
    for c in set(cl) - {"-1"}:
        major[c] = np.bincount([d for x, d in zip(cl, dg) if x == c]).argmax()

    def share(v):
        pairs = zip(v.values(field), v.values("digit"))
        return float(np.mean([major.get(c, -1) == d for c, d in pairs]))

    return share(fit), share(ds.match(~F("fitted")))


def digits_case():
    """Quality of assignments and stability on the digits."""
    import numpy as np

    import fiftyone as fo
    from fiftyone import ViewField as F

    api = benchlib.plugin_api()
    core = importlib.import_module(PLUGIN + ".core.assign")
    runs = importlib.import_module(PLUGIN + ".runs")
    name = "curate-bench-keeping-digits"
    ds, X, fitted = _digits_dataset(name)
    out = {}
    for method, params in (
        ("kmeans", dict(kmeans__n_clusters=10)),
        ("hdbscan", {}),
    ):
        api.compute_clusters(
            ds.match(F("fitted")), method, "emb", method=method, **params
        )
        res = api.assign_clusters(ds, method)
        fit_share, new_share = _own_digit_shares(ds, f"{method}_cluster")
        state = core.unpack(runs.load_results(ds, method)["assign_model"])
        labels, _, novel = core.assign(state, X[fitted].copy())
        own = np.array(
            ds.match(F("fitted")).values(f"{method}_cluster"), dtype=str
        )
        ok = novel | (labels.astype(str) == own)
        out[method] = dict(
            fitted_share=round(fit_share, 3),
            assigned_share=round(new_share, 3),
            n_assigned=res["n_assigned"],
            n_novel=res["n_novel"],
            self_assignment=round(
                float((labels.astype(str) == own).mean()), 4
            ),
            self_or_novel=round(float(ok.mean()), 4),
        )
    for k in (10, 14):
        t = time.perf_counter()
        api.compute_clusters(
            ds,
            f"stab{k}",
            "emb",
            method="kmeans",
            kmeans__n_clusters=k,
            stability_resamples=10,
        )
        wall = time.perf_counter() - t
        info = api.get_clustering_run_info(ds, f"stab{k}")
        values = sorted(info["stability"]["clusters"].values())
        out[f"stability_k{k}"] = dict(
            wall_s=round(wall, 1),
            refits_s=info["stability"]["seconds"],
            values=[round(v, 2) for v in values],
            stable=sum(v > 0.85 for v in values),
            dissolving=sum(v < 0.6 for v in values),
        )
    fo.delete_dataset(name)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default=",".join(list(CASES) + ["digits"]))
    parser.add_argument("--run", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_case(*args.run)
        return
    benchlib.link_plugin()
    rows = []
    for case in args.cases.split(","):
        if case == "digits":
            print("digits " + json.dumps(digits_case()), flush=True)
        else:
            rows += speed_case(case)
    print()
    print("| case | wall (s) | peak RSS (MB) | stages (s) | notes |")
    print("|---|---|---|---|---|")
    for case, r in rows:
        stages = ", ".join(f"{k} {v}" for k, v in r["stages"].items())
        notes = {
            k: v
            for k, v in r.items()
            if k not in ("wall_s", "peak_mb", "rss_before_mb", "stages")
        }
        print(
            f"| {case} | {r['wall_s']} | {r['peak_mb']:,} | {stages} | "
            f"{json.dumps(notes)} |"
        )


if __name__ == "__main__":
    main()
