"""The demo: digits -> embeddings -> clusters -> a table, then the App.

Builds a FiftyOne dataset from the 1,797 handwritten digits that ship with
scikit-learn (written as PNG files), links this plugin into FiftyOne's
plugins directory, embeds the images with CLIP (or, where the CLIP weights
cannot be downloaded, with the pixel embedder), clusters them with HDBSCAN
through the plugin's operators, prints a table of clusters and opens the
App on 127.0.0.1.

Usage::

    python scripts/demo.py [--no-app] [--port 5151] [--model pixels]
"""

import argparse
import logging
import os

os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = "@curate/clustering"
DATASET = "curate-digits-demo"
IMAGES = os.path.join(REPO, "demo_data", "digits")

logger = logging.getLogger("demo")


def link_plugin():
    """Links this checkout into FiftyOne's plugins directory."""
    import fiftyone as fo

    plugins_dir = fo.config.plugins_dir
    os.makedirs(plugins_dir, exist_ok=True)
    link = os.path.join(plugins_dir, "curate-clustering")
    if os.path.islink(link) and os.path.realpath(link) == REPO:
        return
    if os.path.lexists(link):
        raise SystemExit(
            f"{link} exists and is not a link to {REPO}; remove it first"
        )
    os.symlink(REPO, link)
    logger.info("Linked the plugin into %s", plugins_dir)


def write_images():
    """Writes the sklearn digits as 64x64 PNG files; returns paths and
    labels."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    os.makedirs(IMAGES, exist_ok=True)
    paths = []
    for i, img in enumerate(digits.images):
        path = os.path.join(IMAGES, f"{i:04d}.png")
        if not os.path.exists(path):
            pixels = (255 - img * 16).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).resize((64, 64), Image.NEAREST).save(path)
        paths.append(path)
    return paths, [str(t) for t in digits.target]


def build_dataset():
    import fiftyone as fo

    if fo.dataset_exists(DATASET):
        fo.delete_dataset(DATASET)
    paths, targets = write_images()
    dataset = fo.Dataset(DATASET, persistent=True)
    dataset.add_samples(
        [
            fo.Sample(filepath=p, ground_truth=fo.Classification(label=t))
            for p, t in zip(paths, targets)
        ]
    )
    return dataset


def embed(dataset, model):
    import fiftyone.operators as foo

    op = foo.get_operator(f"{PLUGIN}/compute_embeddings")
    if model == "open_clip":
        try:
            op(dataset, embeddings_field="embeddings", model="open_clip")
            return "open_clip"
        except Exception as e:  # weights unavailable offline, typically
            reason = str(e).strip().splitlines()[-1]
            logger.warning(
                "CLIP weights unavailable, embedding pixels instead: %s",
                reason.split(": ", 1)[-1],
            )
            if dataset.has_field("embeddings"):
                dataset.delete_sample_field("embeddings")
    op(dataset, embeddings_field="embeddings", model="pixels")
    return "pixels"


def print_table(dataset, run_key):
    import fiftyone.operators as foo

    info = foo.get_operator(f"{PLUGIN}/get_clustering_run_info")(
        dataset, run_key=run_key
    ).result
    stats = info["statistics"]
    field = info["config"]["cluster_field"]
    print()
    print(
        f"Run '{run_key}': {info['config']['method']} on "
        f"'{info['config']['embeddings_field']}', "
        f"{stats['n_clusters']} clusters, "
        f"noise {stats['metrics']['noise_fraction']:.1%}, "
        f"silhouette {stats['metrics']['silhouette'] or float('nan'):.3f}"
    )
    print(f"{'cluster':>8} {'size':>6}  most common digits")
    for cid, c in stats["clusters"].items():
        view = dataset.match({field: cid})
        counts = view.count_values("ground_truth.label")
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
        desc = ", ".join(f"{d} ({n})" for d, n in top)
        name = "noise" if cid == "-1" else cid
        print(f"{name:>8} {c['size']:>6}  {desc}")
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-app", action="store_true", help="skip the App")
    parser.add_argument("--port", type=int, default=5151)
    parser.add_argument(
        "--model",
        default="open_clip",
        choices=("open_clip", "pixels"),
        help="embedder (open_clip falls back to pixels when offline)",
    )
    args = parser.parse_args()
    # FiftyOne already prints its own (and this plugin's) log records
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    import fiftyone as fo
    import fiftyone.operators as foo

    link_plugin()
    dataset = build_dataset()
    model = embed(dataset, args.model)
    logger.info("Embedded %d images with %s", len(dataset), model)

    foo.get_operator(f"{PLUGIN}/compute_clusters")(
        dataset,
        run_key="demo",
        embeddings_field="embeddings",
        method="hdbscan",
    )
    print_table(dataset, "demo")

    if args.no_app:
        return
    session = fo.launch_app(
        dataset, address="127.0.0.1", port=args.port, auto=False
    )
    print(f"App running at http://127.0.0.1:{args.port} (Ctrl-C to stop)")
    session.wait(-1)


if __name__ == "__main__":
    main()
