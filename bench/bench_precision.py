"""Forward-pass speed and fidelity of each embedder network by precision.

For open_clip ViT-B-32 and the torchvision networks (random weights; speed
does not depend on the values), times the bare forward pass on a batch of
random images with the weights in float32, under bfloat16 autocast, and
with the weights converted to bfloat16 (what ``precision="auto"`` does on
a CPU with Intel AMX), on this machine's CPU with torch's default thread
count, and compares the bfloat16 vectors with the float32 ones (smallest
cosine similarity over the batch). First, the throughput of a 2048 x 2048
matrix product in both types.

Usage::

    python bench/bench_precision.py [--batch-size 16] [--reps 3]
"""

import argparse
import copy
import time

import torch


def networks():
    """``(name, model, forward)`` for each network the embedders run."""
    import open_clip
    import torchvision

    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    yield "open_clip ViT-B-32", clip, clip.encode_image
    for arch, attr in (
        ("resnet50", "fc"),
        ("efficientnet_b0", "classifier"),
    ):
        model = torchvision.models.get_model(arch, weights=None)
        setattr(model, attr, torch.nn.Identity())
        model.eval()
        yield f"torchvision {arch}", model, model


def rate(forward, x, reps):
    """Images/s of ``forward`` on ``x`` (after one warm-up call)."""
    with torch.inference_mode():
        forward(x)
        start = time.perf_counter()
        for _ in range(reps):
            out = forward(x)
    return reps * len(x) / (time.perf_counter() - start), out.float()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    a = torch.randn(2048, 2048)
    for dtype in (torch.float32, torch.bfloat16):
        m = a.to(dtype)
        m @ m
        start = time.perf_counter()
        for _ in range(10):
            m @ m
        flops = 10 * 2 * 2048**3 / (time.perf_counter() - start)
        print(f"2048 x 2048 matmul, {dtype}: {flops / 1e9:.0f} GFLOP/s")

    x = torch.randn(args.batch_size, 3, 224, 224)
    print(
        f"batch size {args.batch_size}, {args.reps} timed batches, "
        f"{torch.get_num_threads()} threads"
    )
    print()
    print(
        "| network | float32 images/s | bfloat16 autocast images/s | "
        "bfloat16 weights images/s | speed-up | min cosine bfloat16 vs "
        "float32 |"
    )
    print("|---|---|---|---|---|---|")
    for name, model, forward in networks():
        r32, y32 = rate(forward, x, args.reps)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rauto, _ = rate(forward, x, args.reps)
        half = copy.deepcopy(model).to(torch.bfloat16)
        fwd = half.encode_image if hasattr(half, "encode_image") else half
        r16, y16 = rate(fwd, x.to(torch.bfloat16), args.reps)
        cos = torch.nn.functional.cosine_similarity(y32, y16).min().item()
        print(
            f"| {name} | {r32:.1f} | {rauto:.1f} | {r16:.1f} | "
            f"{r16 / r32:.1f}x | "
            f"{cos:.5f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
