"""Embedding throughput: the plugin vs FiftyOne's compute_embeddings vs the
bare model.

A folder of ordinary 640 x 480 JPEGs is made from skimage's sample images
(random crops, flips and brightness), and the same open_clip model (ViT-B-32,
random weights saved as a local checkpoint; speed does not depend on the
weight values) embeds them, in one process, alternating:

- ``plugin``: ``api.compute_embeddings`` end to end with its default
  ``precision="auto"`` (bfloat16 on a CPU with Intel AMX, float32 on
  others), and again with ``precision="float32"`` (it loads the model from
  the checkpoint; its own images/s counts the embedding loop, including the
  database writes);
- ``fiftyone``: ``dataset.compute_embeddings`` with the same model wrapped
  as a FiftyOne ``Model`` + ``EmbeddingsMixin`` + ``TorchModelMixin``
  (FiftyOne's data loader decodes with its default number of workers and
  saves every sample; float32, as FiftyOne runs torch models on a CPU);
- ``ceiling``: the model's bare forward pass on images decoded and
  preprocessed beforehand (no decoding, no database), in float32 and in
  bfloat16 weights, with the best thread count.

The table also gives the smallest cosine similarity between the plugin's
default vectors and FiftyOne's float32 ones, and the largest difference
between the plugin's float32 vectors and FiftyOne's.

Usage::

    python bench/bench_embeddings.py [--images 160] [--batch-size 16]
        [--rounds 3] [--num-workers N] [--threads N] [--busy N]

``--busy 1`` keeps one core busy with another process during the runs, as
the other jobs of a shared machine do (the model's threads then wait for
each other).

Uses FiftyOne's configured database; the dataset is deleted afterwards.
"""

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import benchlib

REPO = benchlib.REPO
PLUGIN_MODULE = "fiftyone.plugins.orgs.curate.clustering"
SOURCES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "coins",
    "camera",
)


def link_plugin(tmp):
    """Points FiftyOne's plugins directory at this checkout (before
    fiftyone is imported)."""
    benchlib.link_plugin(os.path.join(tmp, "plugins"))


def make_images(folder, n, size=(640, 480), seed=0):
    """Writes ``n`` JPEGs of ``size`` made from skimage's sample images."""
    import numpy as np
    import skimage.data
    from PIL import Image, ImageEnhance

    rng = np.random.default_rng(seed)
    sources = []
    for name in SOURCES:
        arr = getattr(skimage.data, name)()
        img = Image.fromarray(arr).convert("RGB")
        sources.append(img)
    paths = []
    w, h = size
    for i in range(n):
        img = sources[i % len(sources)]
        scale = rng.uniform(0.6, 1.0)
        cw = int(img.width * scale)
        ch = min(img.height, int(cw * h / w))
        x = int(rng.integers(0, img.width - cw + 1))
        y = int(rng.integers(0, img.height - ch + 1))
        out = img.crop((x, y, x + cw, y + ch)).resize(size, Image.BICUBIC)
        if rng.random() < 0.5:
            out = out.transpose(Image.FLIP_LEFT_RIGHT)
        out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.7, 1.3))
        path = os.path.join(folder, f"{i:05d}.jpg")
        out.save(path, quality=90)
        paths.append(path)
    return paths


def _spin():
    while True:
        pass


def start_busy(n):
    """Starts ``n`` processes that each keep one core busy."""
    import multiprocessing

    procs = [
        multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    return procs


def make_fiftyone_model(checkpoint):
    """The open_clip model as a FiftyOne model that exposes embeddings."""
    import open_clip
    import torch

    import fiftyone.core.models as fom

    class OpenClipModel(fom.EmbeddingsMixin, fom.TorchModelMixin, fom.Model):
        def __init__(self, checkpoint):
            self.model, _, self._transforms = (
                open_clip.create_model_and_transforms(
                    "ViT-B-32", pretrained=checkpoint
                )
            )
            self.model.eval()
            self._preprocess = True

        @property
        def media_type(self):
            return "image"

        @property
        def ragged_batches(self):
            return False

        @property
        def transforms(self):
            return self._transforms

        @property
        def preprocess(self):
            return self._preprocess

        @preprocess.setter
        def preprocess(self, value):
            self._preprocess = value

        @property
        def has_embeddings(self):
            return True

        @property
        def has_collate_fn(self):
            return False

        @property
        def _using_gpu(self):
            return False

        def embed(self, arg):
            return self.embed_all([arg])[0]

        def embed_all(self, args):
            if self._preprocess and not isinstance(args, torch.Tensor):
                args = [self._transforms(a) for a in args]
            if not isinstance(args, torch.Tensor):
                args = torch.stack(list(args))
            with torch.no_grad():
                out = self.model.encode_image(args)
                out = torch.nn.functional.normalize(out, dim=1)
            return out.numpy()

        def predict(self, arg):
            return self.embed(arg)

        def predict_all(self, args):
            return self.embed_all(args)

    return OpenClipModel(checkpoint)


def ceiling(checkpoint, paths, batch_size, dtype):
    """Images/s of the bare forward pass on pre-decoded tensors, with the
    weights in ``dtype``, with each thread count from 1 to torch's default,
    and the single-process cost of decoding + preprocessing one image."""
    import open_clip
    import torch
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(
        "ViT-B-32", pretrained=checkpoint
    )
    model.eval().to(dtype)
    t = time.perf_counter()
    x = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths])
    x = x.to(dtype)
    decode_ms = 1000 * (time.perf_counter() - t) / len(paths)
    default = torch.get_num_threads()
    rates = {}
    try:
        for threads in range(1, default + 1):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                model.encode_image(x[:batch_size])  # warm-up
                t = time.perf_counter()
                for s in range(0, len(x), batch_size):
                    model.encode_image(x[s : s + batch_size])
                rates[threads] = len(x) / (time.perf_counter() - t)
    finally:
        torch.set_num_threads(default)
    return rates, decode_ms


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="plugin's decoding workers (default: its own choice)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads"
    )
    parser.add_argument(
        "--busy",
        type=int,
        default=0,
        help="processes that keep a core busy during the runs, as other "
        "jobs on a shared machine do",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    tmp = tempfile.mkdtemp(prefix="bench-embeddings-")
    try:
        link_plugin(tmp)
        return run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp):
    """Sets up, runs the rounds and prints the table."""
    import importlib

    import numpy as np
    import open_clip
    import torch

    import fiftyone as fo
    import fiftyone.operators as foo
    import fiftyone.utils.torch as fout

    if args.threads:
        torch.set_num_threads(args.threads)
    foo.get_operator("@curate/clustering/compute_embeddings")  # loads it
    api = importlib.import_module(PLUGIN_MODULE + ".api")

    t = time.perf_counter()
    folder = os.path.join(tmp, "images")
    os.makedirs(folder)
    paths = make_images(folder, args.images)
    checkpoint = os.path.join(tmp, "vit_b_32.pt")
    torch.manual_seed(0)
    torch.save(
        open_clip.create_model("ViT-B-32", pretrained=None).state_dict(),
        checkpoint,
    )
    print(
        f"setup: {len(paths)} JPEGs 640x480 + checkpoint in "
        f"{time.perf_counter() - t:.1f} s; torch threads "
        f"{torch.get_num_threads()}, FiftyOne workers "
        f"{fout.recommend_num_workers(None)}",
        flush=True,
    )

    name = f"bench-embeddings-{os.getpid()}"
    ds = fo.Dataset(name)
    ds.add_samples([fo.Sample(filepath=p) for p in paths])
    fo_model = make_fiftyone_model(checkpoint)
    bs = args.batch_size
    rates = {
        k: []
        for k in (
            "plugin",
            "plugin_e2e",
            "plugin_fp32",
            "fiftyone",
            "ceiling_fp32",
            "ceiling_auto",
        )
    }
    auto = None

    def run_plugin(precision="auto"):
        nonlocal auto
        fp32 = precision == "float32"
        t = time.perf_counter()
        out = api.compute_embeddings(
            ds,
            "plugin_fp32" if fp32 else "plugin_emb",
            open_clip__pretrained=checkpoint,
            batch_size=bs,
            num_workers=args.num_workers,
            precision=precision,
            overwrite=True,
            progress=False,
        )
        wall = time.perf_counter() - t
        assert out["embedded"] == len(paths), out
        if fp32:
            rates["plugin_fp32"].append(out["images_per_s"])
        else:
            auto = out["precision"]
            rates["plugin"].append(out["images_per_s"])
            rates["plugin_e2e"].append(len(paths) / wall)
        print(
            f"plugin ({out['precision']}): {out['images_per_s']:.2f} "
            f"images/s embedding, {len(paths) / wall:.2f} end to end "
            f"({wall:.1f} s with model load)",
            flush=True,
        )

    def run_plugin_fp32():
        run_plugin("float32")

    def run_fiftyone():
        t = time.perf_counter()
        ds.compute_embeddings(
            fo_model, embeddings_field="fo_emb", batch_size=bs, progress=False
        )
        wall = time.perf_counter() - t
        rates["fiftyone"].append(len(paths) / wall)
        print(
            f"fiftyone: {len(paths) / wall:.2f} images/s ({wall:.1f} s)",
            flush=True,
        )

    busy = start_busy(args.busy)
    try:
        for r in range(args.rounds):
            order = (run_plugin, run_fiftyone, run_plugin_fp32)
            for run in order if r % 2 == 0 else order[::-1]:
                run()
            for key, dtype in (
                ("ceiling_fp32", torch.float32),
                ("ceiling_auto", getattr(torch, auto)),
            ):
                by_threads, decode_ms = ceiling(
                    checkpoint, paths[:64], bs, dtype
                )
                rates[key].append(max(by_threads.values()))
                shown = ", ".join(
                    f"{r:.2f} with {t} thread{'s' if t > 1 else ''}"
                    for t, r in by_threads.items()
                )
                print(
                    f"ceiling ({dtype}): {shown} images/s (decode + "
                    f"preprocess {decode_ms:.1f} ms/image in one process); "
                    f"load average {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        a = np.stack(ds.values("plugin_emb"))
        a32 = np.stack(ds.values("plugin_fp32"))
        b = np.stack(ds.values("fo_emb"))
        diff = float(np.abs(a32 - b).max())
        cosine = float((a * b).sum(axis=1).min())
    finally:
        for p in busy:
            p.terminate()
        fo.delete_dataset(name)

    med = {k: statistics.median(v) for k, v in rates.items()}
    print()
    print(
        f"ViT-B-32, {len(paths)} JPEGs 640x480, batch size {bs}, "
        f"{args.rounds} rounds (median), {args.busy} busy processes; "
        f"plugin default precision {auto}: min cosine to FiftyOne's "
        f"vectors {cosine:.5f}; max |plugin float32 - fiftyone| = "
        f"{diff:.1e}"
    )
    print()
    print("| path | images/s | vs FiftyOne | of its ceiling |")
    print("|---|---|---|---|")
    for key, label, ceil in (
        ("plugin", f"plugin, default ({auto}), embedding loop", "auto"),
        ("plugin_e2e", f"plugin ({auto}), incl. model load", "auto"),
        ("plugin_fp32", "plugin, float32, embedding loop", "fp32"),
        ("fiftyone", "FiftyOne `dataset.compute_embeddings`", "fp32"),
        ("ceiling_fp32", "bare forward pass, float32", "fp32"),
        ("ceiling_auto", f"bare forward pass, {auto}", "auto"),
    ):
        print(
            f"| {label} | {med[key]:.2f} | {med[key] / med['fiftyone']:.2f}x"
            f" | {med[key] / med['ceiling_' + ceil]:.0%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
