"""Benchmark: 2-D UMAP projections against FiftyOne Brain's UMAP.

Synthetic embeddings: a mixture of Gaussian components (random centres
scaled by ``--sep``, unit isotropic noise), so each point has a known
generating component. Quality is the 10-NN label agreement in 2-D: the mean
fraction of each point's 10 nearest neighbours in the plot that come from
its own component.

Two modes:

- default: end to end on a FiftyOne dataset in a private ``mongod``, the
  plugin loaded through FiftyOne's plugin system. Times
  ``fob.compute_visualization(ds, embeddings="emb", method="umap")`` and
  ``api.compute_projection(ds, key, embeddings_field="emb")`` on the same
  samples, one after the other in one process, after compiling numba code
  for both on a small input (so neither pays the JIT).
- ``--core``: no database; times only the projection of the in-memory
  matrix (``fiftyone.brain``'s UMAP method unless ``--no-baseline``), for
  inputs too large to insert quickly (1,000,000 samples).

Usage::

    .venv/bin/python bench/bench_projection.py --n 100000
    .venv/bin/python bench/bench_projection.py --core --no-baseline \\
        --n 1000000
"""

import argparse
import atexit
import importlib
import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import numpy as np

logger = logging.getLogger("bench_projection")

import benchlib

REPO = benchlib.REPO
PLUGIN_MODULE = "fiftyone.plugins.orgs.curate.clustering"


def mixture(n, d, k, sep, seed=0, chunk=100000):
    """``n`` float32 points of ``k`` Gaussian components and their
    labels, generated chunk by chunk."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d), dtype=np.float32) * sep
    y = rng.integers(0, k, n)
    X = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        X[start:stop] = rng.standard_normal((stop - start, d), np.float32)
        X[start:stop] += centers[y[start:stop]]
    return X, y


def agreement(Y, labels, k=10):
    """10-NN label agreement of the 2-D points ``Y``."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1).fit(Y)
    _, idx = nn.kneighbors(Y)
    return float((labels[idx[:, 1:]] == labels[:, None]).mean())


def peak_rss_gib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def progress_logger(name):
    state = {"next": 0.0}

    def progress(fraction, label=None):
        if fraction >= state["next"] or fraction >= 1.0:
            logger.info("%s: %3.0f%% %s", name, 100 * fraction, label or "")
            state["next"] = fraction + 0.1

    return progress


# --- a private database and the plugin, as the tests set them up -----------


def start_private_fiftyone(tmp):
    """Starts a private mongod and points FiftyOne and its plugins dir at
    it; must run before ``fiftyone`` is imported."""
    spec = importlib.util.find_spec("fiftyone")
    mongod = os.path.join(os.path.dirname(spec.origin), "db", "bin", "mongod")
    if not os.path.isfile(mongod):
        mongod = shutil.which("mongod")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dbpath = os.path.join(tmp, "db")
    os.makedirs(dbpath)
    log = open(os.path.join(tmp, "mongod.log"), "w")
    proc = subprocess.Popen(
        [mongod, "--dbpath", dbpath, "--port", str(port)]
        + ["--bind_ip", "127.0.0.1", "--nounixsocket"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError("mongod exited at start; see " + log.name)
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            if time.time() > deadline:
                proc.kill()
                raise RuntimeError("mongod did not open its port in 30 s")
            time.sleep(0.05)
    plugins = os.path.join(tmp, "plugins")
    os.makedirs(plugins)
    os.symlink(REPO, os.path.join(plugins, "curate-clustering"))
    os.environ.update(
        FIFTYONE_DATABASE_URI=f"mongodb://127.0.0.1:{port}",
        FIFTYONE_DATABASE_NAME=f"bench-{uuid.uuid4().hex[:8]}",
        FIFTYONE_DATABASE_VALIDATION="false",
        FIFTYONE_DO_NOT_TRACK="true",
        FIFTYONE_PLUGINS_DIR=plugins,
        FIFTYONE_SHOW_PROGRESS_BARS="false",
    )
    return proc


def load_api():
    import fiftyone.operators as foo

    foo.get_operator("@curate/clustering/compute_projection")
    return importlib.import_module(PLUGIN_MODULE + ".api")


# --- the two modes -----------------------------------------------------------


def run_db(args, X, y):
    import fiftyone as fo
    import fiftyone.brain as fob

    api = load_api()
    rows = []

    # numba compiles UMAP's and pynndescent's code once per process
    t = time.perf_counter()
    Xw, _ = mixture(5000, X.shape[1], 10, args.sep, seed=1)
    warm = fo.Dataset()
    warm.add_samples([fo.Sample(filepath=f"/w/{i}.png") for i in range(5000)])
    warm.set_values("emb", list(Xw))
    fob.compute_visualization(warm, embeddings="emb", method="umap")
    api.compute_projection(warm, "warm", embeddings_field="emb")
    logger.info("JIT warm-up: %.1f s", time.perf_counter() - t)

    t = time.perf_counter()
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=f"/b/{i}.png") for i in range(len(X))])
    ds.set_values("emb", list(X))
    ds.set_values("component", y.tolist())
    logger.info(
        "Dataset of %d samples: %.1f s", len(X), time.perf_counter() - t
    )
    label_of = dict(zip(ds.values("id"), ds.values("component")))

    def quality(key):
        results = ds.load_brain_results(key)
        labels = np.array([label_of[i] for i in results.sample_ids])
        return agreement(np.asarray(results.points, np.float32), labels)

    if not args.no_baseline:
        t = time.perf_counter()
        fob.compute_visualization(
            ds, embeddings="emb", method="umap", brain_key="fob_umap"
        )
        rows.append(
            ("fob.compute_visualization(method='umap')", len(X))
            + (time.perf_counter() - t, None, quality("fob_umap"))
        )

    params = {}
    if args.fit_samples is not None:
        params["umap__fit_samples"] = args.fit_samples or None
    t = time.perf_counter()
    out = api.compute_projection(
        ds,
        "curate_umap",
        embeddings_field="emb",
        progress=progress_logger("compute_projection"),
        **params,
    )
    fit = out["params"]["fit_samples"]
    rows.append(
        (f"api.compute_projection(umap, fit_samples={fit})", len(X))
        + (time.perf_counter() - t, out["timings"]["project_s"])
        + (quality("curate_umap"),)
    )
    return rows


def run_core(args, X, y):
    core = benchlib.core("projection")
    rows = []
    Xw, _ = mixture(5000, X.shape[1], 10, args.sep, seed=1)
    t = time.perf_counter()
    core.PROJECTIONS.get("umap")().fit_transform(Xw)
    if not args.no_baseline:
        fob_umap(Xw)
    logger.info("JIT warm-up: %.1f s", time.perf_counter() - t)

    if not args.no_baseline:
        t = time.perf_counter()
        Y = fob_umap(X)
        rows.append(
            ("fiftyone.brain UMAP method (no DB)", len(X))
            + (time.perf_counter() - t, None, agreement(Y, y))
        )

    params = {}
    if args.fit_samples is not None:
        params["umap__fit_samples"] = args.fit_samples or None
    projector = core.PROJECTIONS.get("umap")(**params)
    t = time.perf_counter()
    Y = projector.fit_transform(X, progress=progress_logger("umap"))
    elapsed = time.perf_counter() - t
    fit = projector.params_["fit_samples"]
    rows.append(
        (f"core UMAPProjection (fit_samples={fit})", len(X))
        + (elapsed, elapsed, agreement(Y, y))
    )
    return rows


def fob_umap(X):
    """What ``fob.compute_visualization(method="umap")`` runs on the
    embeddings, with its default config."""
    from fiftyone.brain.visualization import UMAPVisualizationConfig

    config = UMAPVisualizationConfig(verbose=False)
    points, _ = config.build().fit_reducer(X)
    return np.asarray(points, dtype=np.float32)


def stop(mongod, tmp):
    if mongod is not None:
        mongod.terminate()
        try:
            mongod.wait(10)
        except subprocess.TimeoutExpired:
            mongod.kill()
    shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--components", type=int, default=50)
    parser.add_argument(
        "--sep",
        type=float,
        default=0.27,
        help="scale of the random component centres (noise has unit "
        "variance per dimension)",
    )
    parser.add_argument(
        "--fit-samples",
        type=int,
        default=None,
        help="umap__fit_samples (0: fit all points; default: the "
        "schema's default)",
    )
    parser.add_argument("--core", action="store_true")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%X"
    )
    tmp = tempfile.mkdtemp(prefix="bench-projection-")
    if not args.core:
        mongod = start_private_fiftyone(tmp)
    # registered before fiftyone is imported, so it runs after fiftyone's
    # own exit handlers (which still talk to the database)
    atexit.register(stop, mongod if not args.core else None, tmp)

    t = time.perf_counter()
    X, y = mixture(args.n, args.dim, args.components, args.sep)
    logger.info("Generated %d x %d: %.1f s", *X.shape, time.perf_counter() - t)
    rows = run_core(args, X, y) if args.core else run_db(args, X, y)

    print()
    print(
        f"{args.n:,} x {args.dim} float32, {args.components} Gaussian "
        f"components (sep {args.sep}); peak RSS {peak_rss_gib():.1f} GiB"
    )
    print()
    print("| method | samples | total s | projection s | 10-NN agreement |")
    print("|---|---|---|---|---|")
    for name, n, total, proj, q in rows:
        proj = "" if proj is None else f"{proj:.1f}"
        print(f"| {name} | {n:,} | {total:.1f} | {proj} | {q:.3f} |")


if __name__ == "__main__":
    main()
