"""The CPU embedding loop of two versions of ``core/``, side by side.

Loads this checkout's ``core`` and another one (``--old``, e.g. a
``git archive`` of an earlier commit) as two packages in one process, and
alternates them over the same JPEGs (those of ``bench_embeddings.py``) with
open_clip ViT-B-32 (random weights saved as a local checkpoint), default
batch size, workers and precision: images/s of
``core.embed_loop.embed_paths``, no database. Medians of ``--rounds``.

Usage::

    git archive <commit> core | tar -x -C /tmp/old
    python bench/bench_loop_ab.py --old /tmp/old [--images 160] [--rounds 3]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import benchlib


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", required=True)
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import open_clip
    import torch

    make_images = benchlib.sibling("bench_embeddings").make_images

    tmp = tempfile.mkdtemp(prefix="bench-loop-ab-")
    folder = os.path.join(tmp, "images")
    os.makedirs(folder)
    paths = make_images(folder, args.images)
    checkpoint = os.path.join(tmp, "vit_b_32.pt")
    torch.manual_seed(0)
    torch.save(
        open_clip.create_model("ViT-B-32", pretrained=None).state_dict(),
        checkpoint,
    )
    versions = {
        "old": benchlib.core("embedders", root=args.old, package="core_old"),
        "new": benchlib.core("embedders", package="core_new"),
    }
    embedders = {
        k: e.EMBEDDERS.get("open_clip")(pretrained=checkpoint).load("cpu")
        for k, e in versions.items()
    }
    rates = {k: [] for k in versions}
    for r in range(args.rounds):
        order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
        for k in order:
            job = versions[k].EmbedJob(list(paths))
            out = embedders[k].embed(job)
            rates[k].append(out["images_per_s"])
            print(
                f"round {r + 1} {k}: {out['images_per_s']:.1f} images/s "
                f"({out['precision']}); load average "
                f"{os.getloadavg()[0]:.1f}",
                flush=True,
            )
        time.sleep(1)
    for k, v in rates.items():
        print(
            f"{k}: median {statistics.median(v):.1f} images/s "
            f"({', '.join(f'{x:.1f}' for x in v)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
