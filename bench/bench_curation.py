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

``--uniqueness`` lists the sizes at which ``compute_uniqueness`` also runs
(it is slow: 17 s at 20,000 and 55 s at 40,000 on a 2-core machine).
Uses FiftyOne's configured database; datasets are deleted afterwards.
"""

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN_API = "fiftyone.plugins.orgs.curate.clustering.api"


def _clustering_bench():
    spec = importlib.util.spec_from_file_location(
        "_bench_clustering", os.path.join(REPO, "bench", "bench_clustering.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare(name, n):
    """The dataset, its label field and the clustering run (not timed)."""
    import numpy as np

    import fiftyone as fo
    import fiftyone.operators as foo

    ds = _clustering_bench().populate(name, n)
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


def _vm_hwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _Stages:
    """Times between the progress labels of a call."""

    def __init__(self):
        self.marks = [("reading", time.perf_counter())]

    def __call__(self, fraction, label=None):
        label = (label or "").split(":")[0].strip()
        if label and (not self.marks or self.marks[-1][0] != label):
            self.marks.append((label, time.perf_counter()))

    def timings(self, end):
        out = {}
        for (label, t), nxt in zip(
            self.marks, self.marks[1:] + [("end", end)]
        ):
            out[label] = round(out.get(label, 0) + nxt[1] - t, 2)
        return out


def run_case(name, what):
    """One timed call in this process; prints a JSON line."""
    import fiftyone as fo
    import fiftyone.operators as foo

    foo.get_operator("@curate/clustering/compute_clusters")
    api = importlib.import_module(PLUGIN_API)
    ds = fo.load_dataset(name)
    base = _vm_hwm_mb()
    stages = _Stages()
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
                peak_mb=round(_vm_hwm_mb()),
                rss_before_mb=round(base),
                stages=stages.timings(end),
                **extra,
            )
        )
    )


def _timed(name, what):
    proc = subprocess.run(
        [sys.executable, __file__, "--run", name, what],
        capture_output=True,
        text=True,
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")]
    if proc.returncode or not line:
        print(proc.stderr[-3000:])
        raise SystemExit(f"{what} on {name} failed")
    return json.loads(line[0][len("RESULT ") :])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--uniqueness", default="20000")
    parser.add_argument("--run", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_case(*args.run)
        return

    plugins = tempfile.mkdtemp(prefix="curate-bench-plugins-")
    os.symlink(REPO, os.path.join(plugins, "curate-clustering"))
    os.environ["FIFTYONE_PLUGINS_DIR"] = plugins
    import numpy as np

    import fiftyone as fo

    with_uniqueness = {int(x) for x in args.uniqueness.split(",") if x}
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        name = f"curate-bench-curation-{n}"
        t = time.perf_counter()
        flip = prepare(name, n)
        print(f"{n:,}: prepared in {time.perf_counter() - t:.0f} s")
        whats = ["audit", "outliers"]
        if n in with_uniqueness:
            whats.append("uniqueness")
        for what in whats:
            r = _timed(name, what)
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
        print(
            f"| {n:,} | {what} | {r['wall_s']} | {r['peak_mb']:,} | "
            f"{stages} | {notes} |"
        )


if __name__ == "__main__":
    main()
