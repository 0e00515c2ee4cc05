"""Sharded compute_embeddings over 1, 2, 4 and 8 delegated workers.

A stand-in embedder (``sleep``) costs a fixed time per batch and no CPU
(it sleeps, then returns deterministic 512-d vectors without reading any
file), so the scaling measured is that of the sharding, the delegated
operations and the database writes, not of two shared cores. For each
worker count N, N worker processes run FiftyOne's own executor of queued
operations in a loop (``DelegatedOperationService().execute_queued_
operations``, what ``fiftyone delegated launch`` runs every 0.5 s, polled
here every 0.2 s), with the stand-in embedder registered in them and
torch imported (a once-per-worker cost, like the process start); once all
are idle, ``compute_embeddings(..., shards=N)`` queues N shards of a
20,000-sample dataset, and the wall time runs until every shard has
completed (:func:`api.embedding_shards_status`).

Also measured: the write rate of one process writing 20,000 512-d vectors
the way a shard does (``set_values`` in chunks), and the throughput of 8
workers with an embedder that costs nothing (the write-bound ceiling).

Usage::

    python bench/bench_shards.py [--samples 20000] [--batch-seconds 0.25]
        [--workers 1,2,4,8]

Runs against a private ``mongod`` (the test harness's); nothing else is
touched.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import benchlib

PLUGIN_MODULE = "fiftyone.plugins.orgs.curate.clustering"
BATCH = 64
DIM = 512


def register_stand_in():
    """Registers the ``sleep`` embedder in the plugin's registry; returns
    the plugin's API module."""
    import importlib

    import fiftyone.operators as foo

    foo.get_operator("@curate/clustering/compute_embeddings")  # loads it
    base = importlib.import_module(PLUGIN_MODULE + ".core.embedder_base")
    schema = importlib.import_module(PLUGIN_MODULE + ".core.schema")
    if "sleep" in base.EMBEDDERS.names():
        return importlib.import_module(PLUGIN_MODULE + ".api")

    @base.EMBEDDERS.register
    class Sleep(base.Embedder):
        """Costs ``seconds`` per batch of 64, and no CPU."""

        name = "sleep"
        label = "Sleep (benchmark stand-in)"
        description = "Sleeps per batch; deterministic vectors."
        params = (
            schema.Param("seconds", float, 0.25, "Seconds per batch.", min=0),
        )
        uses_model = False

        def build(self, device):
            self.transform_ = lambda img: img

        def embed(self, job):
            import numpy as np

            start = time.perf_counter()
            n = len(job.paths)
            for s in range(0, n, BATCH):
                idx = np.arange(s, min(n, s + BATCH), dtype=np.int64)
                time.sleep(self.params_["seconds"])
                seeds = np.array([hash(job.ids[i]) for i in idx]) % 1000
                vectors = np.sin(
                    np.outer(seeds + 1, np.arange(1, DIM + 1)) * 1e-3
                ).astype(np.float32)
                job.on_chunk(idx, vectors)
                if job.progress is not None:
                    job.progress(idx[-1] / n, "embedding")
            return {
                "embedded": n,
                "failures": [],
                "dim": DIM,
                "precision": None,
                "seconds": time.perf_counter() - start,
                "images_per_s": n / max(time.perf_counter() - start, 1e-9),
            }

    return importlib.import_module(PLUGIN_MODULE + ".api")


def worker(dataset_name, stop_file, ready_file):
    """A worker: FiftyOne's executor of queued operations, in a loop."""
    import logging

    import torch  # noqa: F401 (imported once per worker, not per shard)
    from fiftyone.operators.delegated import DelegatedOperationService

    logging.getLogger("fiftyone.plugins").setLevel(logging.WARNING)
    register_stand_in()
    service = DelegatedOperationService()
    open(ready_file, "w").close()
    while not os.path.exists(stop_file):
        service.execute_queued_operations(dataset_name=dataset_name)
        time.sleep(0.2)


def _start_workers(n, dataset_name, tmp):
    stop = tempfile.mktemp(prefix=f"stop-{n}-", dir=tmp)
    procs, ready = [], []
    for k in range(n):
        ready.append(os.path.join(tmp, f"ready-{n}-{k}"))
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--worker",
                    dataset_name,
                    stop,
                    ready[-1],
                ],
                stdout=open(os.path.join(tmp, f"worker-{n}-{k}.log"), "w"),
                stderr=subprocess.STDOUT,
            )
        )
    while not all(os.path.exists(r) for r in ready):
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"a worker exited; see {tmp}/worker-*.log")
        time.sleep(0.2)
    return procs, stop


def _stop_workers(procs, stop):
    open(stop, "w").close()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def _sharded_run(api, dataset, field, workers, seconds, tmp):
    """Wall time of ``workers`` workers embedding ``dataset`` in as many
    shards, from queueing to the last shard's completion."""
    import fiftyone.operators as foo

    procs, stop = _start_workers(workers, dataset.name, tmp)
    try:
        t = time.perf_counter()
        foo.get_operator("@curate/clustering/compute_embeddings")(
            dataset,
            field,
            model="sleep",
            sleep__seconds=seconds,
            shards=workers,
        )
        while not api.embedding_shards_status(
            dataset, field, count_vectors=False
        )["complete"]:
            if all(p.poll() is not None for p in procs):
                raise RuntimeError(f"the workers exited; see {tmp}")
            time.sleep(0.1)
        wall = time.perf_counter() - t
    finally:
        _stop_workers(procs, stop)
    status = api.embedding_shards_status(dataset, field)
    assert status["with_vector"] == len(dataset), status["summary"]
    dataset.delete_sample_field(field)  # documents stay the same size
    return wall


def write_rate(dataset, field):
    """Vectors/s of one process writing every sample's vector in chunks
    of 2,048, as a shard's writer does."""
    import numpy as np

    ids = dataset.values("id")
    vectors = np.random.default_rng(0).normal(size=(len(ids), DIM))
    vectors = vectors.astype(np.float32)
    t = time.perf_counter()
    for s in range(0, len(ids), 2048):
        values = dict(zip(ids[s : s + 2048], vectors[s : s + 2048]))
        dataset.set_values(field, values, key_field="id", validate=False)
    return len(ids) / (time.perf_counter() - t)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--batch-seconds", type=float, default=0.25)
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker)

    harness = benchlib.harness()
    harness.start()
    try:
        return run(args, harness)
    finally:
        harness.stop()


def run(args, harness):
    import logging

    import fiftyone as fo

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("fiftyone.plugins").setLevel(logging.WARNING)
    api = register_stand_in()
    tmp = tempfile.mkdtemp(prefix="bench-shards-")
    dataset = fo.Dataset("bench-shards")
    dataset.persistent = True
    dataset.add_samples(
        [
            fo.Sample(filepath=f"/bench/{i:06d}.jpg")
            for i in range(args.samples)
        ]
    )
    per_worker = BATCH / args.batch_seconds
    print(
        f"{args.samples:,} samples, stand-in embedder {args.batch_seconds} s "
        f"per batch of {BATCH} ({per_worker:.0f} samples/s per worker), "
        f"{DIM}-d vectors; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rate = write_rate(dataset, "written")
    dataset.delete_sample_field("written")
    print(f"one process writing vectors: {rate:,.0f} vectors/s", flush=True)
    walls = {}
    for n in [int(x) for x in args.workers.split(",")]:
        walls[n] = _sharded_run(
            api, dataset, f"emb_{n}", n, args.batch_seconds, tmp
        )
        print(f"{n} workers: {walls[n]:.1f} s", flush=True)
    free = _sharded_run(api, dataset, "emb_free", 8, 0.0, tmp)
    print(f"8 workers, embedder costing nothing: {free:.1f} s", flush=True)

    one = walls[min(walls)]
    print()
    print("| workers | wall (s) | samples/s | speed-up | ideal |")
    print("|---|---|---|---|---|")
    for n, wall in walls.items():
        print(
            f"| {n} | {wall:.1f} | {args.samples / wall:,.0f} | "
            f"{one / wall:.2f}x | {n}x |"
        )
    print(
        f"| 8, free embedder (write-bound) | {free:.1f} | "
        f"{args.samples / free:,.0f} | | |"
    )
    print(
        f"\none process writes {rate:,.0f} vectors/s; 8 workers with a free "
        f"embedder reached {args.samples / free:,.0f} samples/s"
    )
    fo.delete_dataset(dataset.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
