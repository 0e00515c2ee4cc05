"""Benchmark of cluster naming: concurrent versus sequential requests.

Labels ``--clusters`` clusters of ``--images`` images each with
:func:`core.labeling.label_clusters` and the real ``openai`` client,
against the local chat-completions server of ``tests/llm_server.py``
answering every request after ``--latency`` seconds, once with
``max_concurrency=8`` (the default) and once with ``max_concurrency=1``
(a sequential client). Every image is a distinct 1024 x 768 JPEG file,
turned into a 512-px thumbnail on the way, as in real use.

Usage::

    .venv/bin/python bench/bench_labeling.py
"""

import argparse
import logging
import os
import tempfile
import time

import numpy as np
from PIL import Image

import benchlib

labeling = benchlib.core("labeling")
LLMServer = benchlib.load(
    "llm_server", os.path.join(benchlib.REPO, "tests", "llm_server.py")
).LLMServer

logger = logging.getLogger(__name__)


def make_images(folder, n, size=(1024, 768), seed=0):
    """Writes ``n`` noisy colour JPEGs; returns their paths."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        colour = rng.integers(0, 256, size=3)
        noise = rng.integers(-40, 40, size=(size[1] // 8, size[0] // 8, 3))
        arr = np.clip(colour + noise, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr).resize(size, Image.BILINEAR)
        path = os.path.join(folder, f"img{i:05d}.jpg")
        img.save(path, quality=90)
        paths.append(path)
    return paths


def run(server, jobs, max_concurrency):
    labeler = labeling.OpenAILabeler(
        "bench-key", model="bench-model", base_url=server.url, timeout=30
    )
    server.clear()
    t = time.perf_counter()
    outcomes = labeling.label_clusters(
        jobs, labeler, max_concurrency=max_concurrency
    )
    wall = time.perf_counter() - t
    labeler.close()
    return dict(
        max_concurrency=max_concurrency,
        clusters=len(jobs),
        labelled=sum(o.label is not None for o in outcomes),
        requests=len(server.requests),
        max_in_flight=server.max_in_flight,
        violations=len(server.violations),
        wall_s=wall,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as folder:
        paths = make_images(folder, args.clusters * args.images)
        jobs = [
            labeling.Job(
                str(c),
                paths[c * args.images : (c + 1) * args.images],
                list(range(args.images)),
            )
            for c in range(args.clusters)
        ]
        with LLMServer(latency=args.latency) as server:
            rows = [run(server, jobs, 8), run(server, jobs, 1)]

    print(
        f"{args.clusters} clusters x {args.images} images, server latency "
        f"{args.latency} s per request"
    )
    head = (
        "max_concurrency | clusters | labelled | requests | max in flight "
        "| wall s | s / cluster"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['max_concurrency']:>15} | {r['clusters']:>8} | "
            f"{r['labelled']:>8} | {r['requests']:>8} | "
            f"{r['max_in_flight']:>13} | {r['wall_s']:>6.2f} | "
            f"{r['wall_s'] / r['clusters']:>11.3f}"
        )
    print(f"speed-up: {rows[1]['wall_s'] / rows[0]['wall_s']:.1f}x")
    assert all(r["violations"] == 0 for r in rows)


if __name__ == "__main__":
    main()
