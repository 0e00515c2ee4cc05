"""Images decoded and preprocessed in batches, as tensors on the model's
device: what the embedding loop (:mod:`.embed_loop`) does on a GPU.

The files' bytes are read by a pool of threads, the JPEGs of a batch are
decoded in one call (``torchvision.io.decode_jpeg(list, device=...)``:
nvjpeg on a CUDA device), then resized, cropped and normalised there,
batched (:class:`BatchTransform`), so the CPU only reads files. The rest is
decoded per file on the CPU, exactly as the data loader does
(:func:`.images.load_rgb` and the embedder's own transform): other formats,
JPEGs that are CMYK, 12-bit or turned by their EXIF orientation (the GPU
decoder cannot turn them), and any file the batched decoder refuses.

Covered preprocessing (:func:`batch_transform`): a torchvision ``Compose``
of ``Resize`` / ``CenterCrop`` / ``ToTensor`` / ``Normalize`` as open_clip
builds them (resize of the shortest side, centre crop, mean/std), and the
``ImageClassification`` presets of torchvision's weights (the CNNs). Other
transforms return ``None``, and their embedders decode on the CPU.

Everything here also runs on CPU tensors (the device is a parameter),
which is how it is tested against the per-file path.
"""

import concurrent.futures
import queue
import threading
import warnings

from .images import load_rgb

# JPEG markers (the second byte of 0xFF xx)
_SOI = 0xD8
_SOS = 0xDA
_APP1 = 0xE1
# Start-of-frame markers: baseline, extended, progressive, lossless, ...
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD}
_SOF.update({0xCE, 0xCF})
# Markers without a length field
_STANDALONE = {0x01, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7}


def _exif_orientation(segment):
    """The orientation tag (1-8) of an APP1 Exif segment, or ``None``."""
    if not segment.startswith(b"Exif\x00\x00") or len(segment) < 14:
        return None
    tiff = segment[6:]
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None:
        return None

    def num(at, size):
        return int.from_bytes(tiff[at : at + size], order)

    ifd = num(4, 4)
    if ifd + 2 > len(tiff):
        return None
    for k in range(num(ifd, 2)):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(tiff):
            return None
        if num(entry, 2) == 0x0112:  # Orientation
            return num(entry + 8, 2)
    return None


def jpeg_header(data):
    """What decides whether a JPEG can be decoded in a batch: its number of
    colour components, bits per sample and EXIF orientation.

    Args:
        data: the file's bytes

    Returns:
        a dict with ``components``, ``bits`` and ``orientation`` (``None``
        where absent), or ``None`` if ``data`` is not a JPEG whose frame
        header could be found
    """
    if len(data) < 4 or data[0] != 0xFF or data[1] != _SOI:
        return None
    out = {"components": None, "bits": None, "orientation": None}
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        body = data[i + 4 : i + 2 + length]
        if marker == _APP1 and out["orientation"] is None:
            out["orientation"] = _exif_orientation(bytes(body))
        elif marker in _SOF and len(body) >= 6:
            out["bits"] = body[0]
            out["components"] = body[5]
            return out
        elif marker == _SOS:
            return None
        i += 2 + length
    return None


def batchable_jpeg(data):
    """Whether ``data`` is a JPEG that the batched decoder turns into the
    same RGB pixels as the per-file path: 8-bit greyscale or YCbCr, upright
    (no EXIF orientation other than 1), and complete (it ends with the
    end-of-image marker: a truncated file fails on the per-file path, and
    must not be decoded half by another decoder)."""
    head = jpeg_header(data)
    return (
        head is not None
        and data.rstrip(b"\x00")[-2:] == b"\xff\xd9"
        and head["components"] in (1, 3)
        and head["bits"] == 8
        and head["orientation"] in (None, 1)
    )


def decode_jpegs(datas, device):
    """Decodes JPEG bytes into RGB ``uint8`` tensors ``3 x H x W`` on
    ``device``, the whole list in one call; if that call fails, each file
    on its own.

    Args:
        datas: a list of 1-D ``uint8`` CPU tensors of file bytes
        device: a torch device (``cuda``: nvjpeg)

    Returns:
        a list with, per file, its tensor or the exception that refused it
    """
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    device = torch.device(device)
    if not datas:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation notice
        try:
            return list(decode_jpeg(datas, ImageReadMode.RGB, device=device))
        except Exception:  # one bad file fails the batch: retry each
            pass
        out = []
        for data in datas:
            try:
                out.append(decode_jpeg(data, ImageReadMode.RGB, device=device))
            except Exception as e:
                out.append(e)
        return out


class BatchTransform:
    """Preprocessing of a batch of same-size RGB ``uint8`` images
    ``N x 3 x H x W``, on their device, into the float tensor an embedder's
    model takes; see :func:`batch_transform` and :func:`preprocess`.

    Args:
        steps: callables applied in order to the batch tensor
        name: what it does, for logs
    """

    def __init__(self, steps, name):
        self.steps = list(steps)
        self.name = name

    def __call__(self, x):
        for step in self.steps:
            x = step(x)
        return x

    def __repr__(self):
        return f"BatchTransform({self.name})"


def _to_float(x):
    """``ToTensor`` on a ``uint8`` batch: float32 in ``[0, 1]``."""
    import torch

    return x.to(torch.float32).div_(255.0)


def batch_transform(transform):
    """The batched tensor equivalent of an embedder's per-image transform
    (the one that takes a :class:`PIL.Image.Image`), or ``None`` where it
    is not covered.

    Covered: torchvision's ``ImageClassification`` presets (resize,
    centre crop, float, normalise), and a ``Compose`` of ``Resize`` (without
    ``max_size``), ``CenterCrop``, ``ToTensor`` (open_clip's
    ``MaybeToTensor``), ``Normalize`` and RGB conversions (open_clip's
    ``MaybeConvertMode`` / ``_convert_to_rgb``: decoded images are RGB
    already), with a crop, so that every image ends the same size.
    """
    import torchvision.transforms as T
    from torchvision.transforms._presets import ImageClassification

    if isinstance(transform, ImageClassification):
        return BatchTransform([transform], repr(transform).replace("\n", ""))
    if not isinstance(transform, T.Compose):
        return None
    steps, floats, cropped = [], False, False
    for t in transform.transforms:
        kind = type(t).__name__
        name = getattr(t, "__name__", kind)
        if kind in ("ToTensor", "MaybeToTensor") and not floats:
            steps.append(_to_float)
            floats = True
        elif name in ("MaybeConvertMode", "_convert_to_rgb"):
            continue
        elif isinstance(t, T.Resize) and not floats and t.max_size is None:
            steps.append(t)
            cropped = (
                cropped or not isinstance(t.size, int) and len(t.size) == 2
            )
        elif isinstance(t, T.CenterCrop) and not floats:
            steps.append(t)
            cropped = True
        elif isinstance(t, T.Normalize) and floats:
            steps.append(t)
        else:
            return None
    if not (floats and cropped):
        return None
    names = ", ".join(type(s).__name__ for s in transform.transforms)
    return BatchTransform(steps, names)


def preprocess(images, transform):
    """Applies a :class:`BatchTransform` to images of any sizes: one call
    per size, the results back in the images' order.

    Args:
        images: a list of RGB ``uint8`` tensors ``3 x H x W`` on one device
        transform: a :class:`BatchTransform`

    Returns:
        a tensor with one preprocessed image per row, in order
    """
    import torch

    by_size = {}
    for i, img in enumerate(images):
        by_size.setdefault(tuple(img.shape), []).append(i)
    out = [None] * len(images)
    for rows in by_size.values():
        done = transform(torch.stack([images[i] for i in rows]))
        for row, i in enumerate(rows):
            out[i] = done[row]
    return torch.stack(out)


def _error(e):
    return f"{type(e).__name__}: {e}"


class TensorBatches:
    """Batches of images decoded and preprocessed on ``device``: iterating
    yields ``(indices, batch, errors)`` as the embedding loop's data loader
    does (positions in ``paths`` of the rows of ``batch``, in order, and
    ``(position, reason)`` of the files that could not be read).

    A thread reads the files of the next batches ahead with a pool of
    ``threads`` (``prefetch`` batches at most); the per-file path
    (``cpu_transform(load_rgb(path))``) runs in that pool too. JPEGs are
    decoded in one call per batch and preprocessed with ``transform``.

    Args:
        paths: image file paths
        batch_size: images per batch
        transform: a :class:`BatchTransform`
        cpu_transform: the embedder's per-image transform (a PIL image to
            a float tensor)
        device: where JPEGs are decoded and preprocessed
        threads (8): threads that read files
        prefetch (4): batches read ahead
    """

    def __init__(
        self,
        paths,
        batch_size,
        transform,
        cpu_transform,
        device,
        threads=8,
        prefetch=4,
    ):
        self.paths = list(paths)
        self.batch_size = batch_size
        self.transform = transform
        self.cpu_transform = cpu_transform
        self.device = device
        self.threads = max(1, int(threads))
        self.prefetch = prefetch
        self.num_workers = 0  # decoding takes no CPU core of the model's
        self.decoded_on_device = 0
        self.decoded_per_file = 0

    def __len__(self):
        return -(-len(self.paths) // self.batch_size)

    def _per_file(self, path):
        try:
            return self.cpu_transform(load_rgb(path))
        except Exception as e:  # each file's failure is reported
            return _error(e)

    def _read(self, path):
        """``("jpeg", bytes tensor)``, ``("done", tensor)`` (decoded on
        the CPU) or ``("error", reason)``."""
        import torch

        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            return "error", _error(e)
        if batchable_jpeg(data):
            return "jpeg", torch.frombuffer(bytearray(data), dtype=torch.uint8)
        out = self._per_file(path)
        return ("error", out) if isinstance(out, str) else ("done", out)

    def _produce(self, out, stop):
        with concurrent.futures.ThreadPoolExecutor(self.threads) as pool:
            for start in range(0, len(self.paths), self.batch_size):
                chunk = self.paths[start : start + self.batch_size]
                item = (start, list(pool.map(self._read, chunk)))
                while not stop.is_set():
                    try:
                        out.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        out.put(None)

    def __iter__(self):
        read = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        producer = threading.Thread(
            target=self._produce, args=(read, stop), daemon=True
        )
        producer.start()
        try:
            while (item := read.get()) is not None:
                yield self._batch(*item)
        finally:
            stop.set()

    def _batch(self, start, items):
        """Decodes and preprocesses one batch of read files."""
        import torch

        jpegs = [i for i, (kind, _) in enumerate(items) if kind == "jpeg"]
        decoded = decode_jpegs([items[i][1] for i in jpegs], self.device)
        images, rows, per_file = [], [], {}
        for i, img in zip(jpegs, decoded):
            if isinstance(img, Exception):  # refused: the per-file path
                out = self._per_file(self.paths[start + i])
                items[i] = (
                    ("error", out)
                    if isinstance(out, str)
                    else (
                        "done",
                        out,
                    )
                )
            else:
                images.append(img)
                rows.append(i)
        batch = preprocess(images, self.transform) if images else None
        for i, (kind, value) in enumerate(items):
            if kind == "done":
                per_file[i] = value.to(self.device)
        self.decoded_on_device += len(rows)
        self.decoded_per_file += len(per_file)
        order = sorted(set(rows) | set(per_file))
        row_of = {i: r for r, i in enumerate(rows)}
        tensors = [
            batch[row_of[i]] if i in row_of else per_file[i] for i in order
        ]
        errors = [
            (start + i, value)
            for i, (kind, value) in enumerate(items)
            if kind == "error"
        ]
        indices = [start + i for i in order]
        return indices, torch.stack(tensors) if tensors else None, errors
