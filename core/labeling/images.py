"""The images shown for a cluster: which members (:func:`select_members`)
and as what (:func:`make_thumbnail`, small JPEGs sent as ``data:`` URLs)."""

import base64
import io

import numpy as np
from PIL import Image, ImageOps

from ..images import to_rgb
from .options import SELECTIONS

THUMBNAIL_SIZE = 512
JPEG_QUALITY = 85


def make_thumbnail(path, max_side=THUMBNAIL_SIZE, quality=JPEG_QUALITY):
    """Reads an image file and returns a JPEG thumbnail of it.

    The image is turned upright (EXIF orientation), converted to RGB
    (transparency over white) and shrunk so that its longest side is at
    most ``max_side`` pixels; smaller images keep their size.

    Args:
        path: an image file
        max_side (512): the longest side of the thumbnail, in pixels
        quality (85): the JPEG quality

    Returns:
        the JPEG bytes
    """
    with Image.open(path) as img:
        w, h = img.size
        if img.format == "JPEG" and max(w, h) > max_side:
            # Let the JPEG decoder shrink by 1/2, 1/4 or 1/8 on the way,
            # never below the thumbnail's size
            scale = max_side / max(w, h)
            img.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
        img = to_rgb(ImageOps.exif_transpose(img))
        if max(img.size) > max_side:
            img.thumbnail((max_side, max_side), Image.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        return buf.getvalue()


def data_url(jpeg):
    """A ``data:`` URL of JPEG bytes."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


# --------------------------------------------------------------------------
# Choice of the images shown
# --------------------------------------------------------------------------


def select_members(
    ids, X, n, selection="representative", representatives=(), seed=0
):
    """Chooses which members of a cluster to show.

    ``"representative"`` shows the most typical members first (the run's
    ``representatives``, nearest the cluster centre), about half of ``n``,
    then completes with members spread over the cluster: farthest-point
    picks in embedding space, each the member farthest from those already
    chosen. ``"random"`` draws ``n`` members uniformly with ``seed``.

    Args:
        ids: the ids of the candidate members (a cluster, or a sample of
            it that contains its representatives)
        X: float32 matrix of their embeddings, rows aligned with ``ids``,
            or ``None`` (spread-out picks are then random)
        n: how many to choose
        selection ("representative"): one of :data:`SELECTIONS`
        representatives (()): ids of typical members, most typical first
        seed (0): seed (an int or a sequence of ints) of the random choices

    Returns:
        a list of at most ``n`` distinct ids from ``ids``
    """
    if selection not in SELECTIONS:
        raise ValueError(
            f"Unknown selection {selection!r}; use one of "
            f"{', '.join(SELECTIONS)}"
        )
    ids = list(ids)
    n = min(int(n), len(ids))
    if n <= 0:
        return []
    rng = np.random.default_rng(seed)
    if selection == "random":
        return [ids[i] for i in sorted(rng.choice(len(ids), n, False))]

    index = {_id: i for i, _id in enumerate(ids)}
    n_typical = n - n // 2
    chosen = []
    for _id in representatives:
        if len(chosen) == n_typical:
            break
        if _id in index and index[_id] not in chosen:
            chosen.append(index[_id])
    if not chosen:
        chosen.append(int(rng.integers(len(ids))))

    if X is None or len(X) != len(ids):
        rest = [i for i in rng.permutation(len(ids)) if i not in chosen]
        chosen += rest[: n - len(chosen)]
        return [ids[i] for i in chosen]

    X = np.asarray(X, dtype=np.float32)
    diff = X - X[chosen[0]]
    mind = np.einsum("ij,ij->i", diff, diff)
    for i in chosen[1:]:
        diff = X - X[i]
        np.minimum(mind, np.einsum("ij,ij->i", diff, diff), out=mind)
    mind[chosen] = -1.0
    while len(chosen) < n:
        i = int(np.argmax(mind))
        if mind[i] < 0:
            break
        chosen.append(i)
        diff = X - X[i]
        np.minimum(mind, np.einsum("ij,ij->i", diff, diff), out=mind)
        mind[chosen] = -1.0
    return [ids[i] for i in chosen]
