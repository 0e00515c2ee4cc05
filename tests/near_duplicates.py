"""Real image files with planted near duplicates (made importable by
``tests/conftest.py``): sklearn digits upscaled and images of
``skimage.data``, saved as PNG; a copy of some of them re-encoded as JPEG
at a lower quality, resized by a few percent or cropped by a few pixels,
and byte-for-byte copies of a few others."""

import io
import os
import shutil

import numpy as np

# skimage.data images that need no download (the textures grass, gravel
# and brick are left out: at thumbnail size they are uniform grey, and so
# near duplicates of each other)
SKIMAGE = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "coins",
    "moon",
    "page",
    "text",
    "horse",
    "clock",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "cell",
    "logo",
    "binary_blobs",
    "checkerboard",
    "shepp_logan_phantom",
)


def _images(n_digits):
    from PIL import Image
    from sklearn.datasets import load_digits
    import skimage.data as skd

    digits = load_digits()
    out = []
    for i in range(n_digits):
        a = (255 - digits.images[i] * 255 / 16).astype(np.uint8)
        im = Image.fromarray(a).resize((256, 256), Image.Resampling.BICUBIC)
        out.append(im.convert("RGB"))
    for name in SKIMAGE:
        try:
            a = getattr(skd, name)()
        except Exception:  # an image this skimage does not ship
            continue
        a = a.astype(np.float64)
        a = (255 * (a - a.min()) / (a.max() - a.min() + 1e-9)).astype(np.uint8)
        if a.ndim == 3 and a.shape[2] == 4:
            a = a[..., :3]
        out.append(Image.fromarray(a).convert("RGB"))
    return out


def _variant(im, kind, rng):
    """A near duplicate: JPEG at quality 40-70, resized by up to 6%, or
    cropped by 2-4 pixels on each side."""
    from PIL import Image

    w, h = im.size
    if kind == 0:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=int(rng.integers(40, 70)))
        buf.seek(0)
        return Image.open(buf).convert("RGB")
    if kind == 1:
        f = 1 + rng.uniform(-0.06, 0.06)
        size = (max(8, int(w * f)), max(8, int(h * f)))
        return im.resize(size, Image.Resampling.BILINEAR)
    c = int(rng.integers(2, 5))
    return im.crop((c, c, w - c, h - c))


def make_images(folder, n_digits=300, n_near=60, n_exact=5, seed=51):
    """Writes the images into ``folder``.

    Returns:
        ``(paths, pairs)``: the file paths, and the planted pairs as
        ``(original index, copy index)``
    """
    rng = np.random.default_rng(seed)
    images = _images(n_digits)
    paths = []
    for i, im in enumerate(images):
        path = os.path.join(folder, f"img{i:04d}.png")
        im.save(path)
        paths.append(path)
    pairs = []
    sources = rng.choice(len(images), n_near + n_exact, replace=False)
    for j, s in enumerate(sources[:n_near]):
        path = os.path.join(folder, f"near{j:03d}.jpg")
        _variant(images[s], j % 3, rng).save(path, quality=90)
        paths.append(path)
        pairs.append((int(s), len(paths) - 1))
    for j, s in enumerate(sources[n_near:]):
        path = os.path.join(folder, f"copy{j:03d}.png")
        shutil.copy(paths[s], path)
        paths.append(path)
        pairs.append((int(s), len(paths) - 1))
    return paths, pairs


def pair_scores(groups, pairs):
    """Recall and precision of planted ``pairs`` among the pairs of
    samples that share a group (``groups``: one id or ``None`` each)."""
    found = set()
    members = {}
    for i, g in enumerate(groups):
        if g is not None:
            members.setdefault(g, []).append(i)
    for rows in members.values():
        for a in range(len(rows)):
            for b in range(a + 1, len(rows)):
                found.add((rows[a], rows[b]))
    planted = {(min(a, b), max(a, b)) for a, b in pairs}
    hit = len(found & planted)
    return hit / len(planted), hit / max(1, len(found))
