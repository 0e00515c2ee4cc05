"""The loop that runs an embedder over image files: :func:`embed_paths`.

A torch ``DataLoader`` with worker processes decodes and preprocesses
images (on a CUDA device, JPEGs are decoded and preprocessed there in
batches instead, see :mod:`.gpu_decode`) while the model runs batched
inference under
``torch.inference_mode()`` (float16 autocast on a GPU, bfloat16 weights on a
CPU with AMX; see :func:`.devices.resolve_precision`); vectors are handed to
a callback in chunks, so a caller can store them as they come and an
interrupted run keeps what was done.
"""

import contextlib
import logging
import os
import sys
import time

import numpy as np

from .devices import precision_name
from .gpu_decode import TensorBatches
from .images import load_rgb
from .progress import ItemProgress
from .thread_tuner import thread_tuner

logger = logging.getLogger(__name__)

# Vectors are handed to the caller (and stored) at least this often
CHUNK_SIZE = 2048

# Seconds between log lines while embedding
LOG_EVERY = 15.0

# Where images are decoded (see embed_paths)
DECODE_CHOICES = ("auto", "tensor", "pil")


class ImageError(ValueError):
    """An image file is missing, unreadable or corrupt.

    Attributes:
        path: the file
        reason: what went wrong
    """

    def __init__(self, path, reason):
        super().__init__(f"Cannot embed image '{path}': {reason}")
        self.path = path
        self.reason = reason


def load_image(path):
    """Reads an image file as an RGB :class:`PIL.Image.Image`, with its EXIF
    orientation applied and 16-bit pixels scaled to 8 bits (as the App
    shows it).

    Raises:
        OSError: if the file is missing, unreadable, truncated or not an
            image
    """
    return load_rgb(path)


class _Images:
    """A torch dataset of image files; a file that cannot be read yields an
    error message instead of a tensor."""

    def __init__(self, paths, transform):
        self.paths = paths
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            return i, self.transform(load_image(self.paths[i])), None
        except Exception as e:  # each file's failure is reported, not raised
            return i, None, f"{type(e).__name__}: {e}"


def _collate(items):
    import torch

    good = [(i, x) for i, x, _ in items if x is not None]
    errors = [(i, e) for i, _, e in items if e is not None]
    indices = [i for i, _ in good]
    batch = torch.stack([x for _, x in good]) if good else None
    return indices, batch, errors


def _n_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_num_workers(device, uses_model=True):
    """Worker processes that decode images (threads that read files, when
    they are decoded on the device): on a CPU, leave the model all but one
    core (up to 4 workers); on a GPU, or without a model, decoding is the
    bottleneck: one per core (an H100 with 16 cores ran 1.6x faster with
    16 than with 8)."""
    n = _n_cpus()
    if device.type == "cpu" and uses_model:
        return max(1, min(4, n - 1))
    return max(1, n)


def default_batch_size(device, uses_model=True):
    """Images per batch: 16 on a CPU, 256 on a GPU and without a model."""
    if not uses_model or device.type != "cpu":
        return 256
    return 16


def tensor_transform(embedder, device, decode="auto"):
    """The :class:`.gpu_decode.BatchTransform` that decodes the embedder's
    images as tensors on ``device``, or ``None`` where they are decoded per
    file by the data loader.

    Args:
        embedder: a loaded embedder
        device: the torch device it runs on
        decode ("auto"): ``"auto"`` (on a CUDA device, where the embedder's
            preprocessing is covered), ``"tensor"`` (wherever it is
            covered, on any device) or ``"pil"`` (never)
    """
    if decode not in DECODE_CHOICES:
        raise ValueError(
            f"decode must be one of {', '.join(DECODE_CHOICES)}; got "
            f"{decode!r}"
        )
    if decode == "pil" or (decode == "auto" and device.type != "cuda"):
        return None
    return embedder.batch_transform()


def _worker_context(num_workers):
    """The multiprocessing context for data loader workers, and the number
    of workers that can be used with it."""
    if num_workers == 0:
        return None, 0
    if sys.platform.startswith("linux"):
        # Workers inherit this module by forking; spawned workers could not
        # import it when it was loaded by FiftyOne's plugin system
        return "fork", num_workers
    if __name__.startswith("fiftyone.plugins."):
        logger.info(
            "Decoding images in the main process: worker processes cannot "
            "import plugin modules on %s",
            sys.platform,
        )
        return None, 0
    return None, num_workers


def _make_loader(embedder, paths, batch_size, num_workers, decode="auto"):
    """The data loader that decodes and preprocesses ``paths`` in batches
    for a loaded ``embedder`` (a :class:`.gpu_decode.TensorBatches` where
    :func:`tensor_transform` says so), with default batch size and workers
    picked for its device; logs what runs where."""
    import torch

    device = torch.device(embedder.device_ or "cpu")
    n = len(paths)
    if batch_size is None:
        batch_size = default_batch_size(device, embedder.uses_model)
    batched = tensor_transform(embedder, device, decode)
    if batched is not None:
        threads = num_workers or default_num_workers(device, False)
        logger.info(
            "Embedding %d images with %s on %s%s (batch size %d; JPEGs "
            "decoded and preprocessed on %s, %d threads read files)",
            n,
            embedder.describe(),
            device,
            _in_precision(embedder.dtype_),
            batch_size,
            device,
            threads,
        )
        return TensorBatches(
            paths,
            batch_size,
            batched,
            embedder.transform_,
            device,
            threads=threads,
        )
    if num_workers is None:
        num_workers = default_num_workers(device, embedder.uses_model)
        if n <= batch_size:
            num_workers = 0
    context, num_workers = _worker_context(num_workers)
    loader = torch.utils.data.DataLoader(
        _Images(list(paths), embedder.transform_),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        multiprocessing_context=context,
        # batches in flight: workers x prefetch (large ones on a GPU)
        prefetch_factor=(
            (4 if batch_size < 128 else 2) if num_workers else None
        ),
        persistent_workers=False,
    )
    logger.info(
        "Embedding %d images with %s on %s%s (batch size %d, %d workers)",
        n,
        embedder.describe(),
        device,
        _in_precision(embedder.dtype_),
        batch_size,
        num_workers,
    )
    return loader


def _in_precision(dtype):
    return f" in {precision_name(dtype)}" if dtype is not None else ""


class _Model:
    """Runs a loaded embedder's model on batches: on its device, in its
    precision (autocast on a GPU; on a CPU the weights are converted
    already and the thread count is tuned by timing), into float32 numpy
    vectors.

    Attributes:
        dtype: the floating-point type the model runs in (float32 when the
            device cannot autocast to the one asked for; ``None`` without a
            model)
    """

    def __init__(self, embedder, num_workers):
        import torch

        self.embedder = embedder
        self.device = torch.device(embedder.device_ or "cpu")
        self.dtype = embedder.dtype_
        self.autocast = contextlib.nullcontext()
        gpu = self.device.type != "cpu"
        if gpu and self.dtype not in (None, torch.float32):
            try:
                self.autocast = torch.autocast(
                    self.device.type, dtype=self.dtype
                )
            except RuntimeError as e:  # a type it cannot autocast to
                logger.warning("Running in float32: %s", e)
                self.dtype = torch.float32
        # On a CPU the model's weights are already in ``dtype`` (None: no
        # model), so batches are cast to it
        self.cast = None if gpu else self.dtype
        self.tuner = None
        if embedder.uses_model and not gpu:
            self.tuner = thread_tuner(num_workers)

    def __call__(self, batch):
        """The ``n x d`` float32 vectors of a batch tensor."""
        import torch

        batch = batch.to(self.device, dtype=self.cast, non_blocking=True)
        with self.autocast:
            if self.tuner is not None:
                out = self.tuner.run(self.embedder.forward, batch)
            else:
                out = self.embedder.forward(batch)
        out = out.float()
        if self.embedder.normalize:
            out = torch.nn.functional.normalize(out, dim=1)
        return out.cpu().numpy().astype(np.float32, copy=False)

    def close(self):
        """Restores the CPU thread count the run found."""
        if self.tuner is not None:
            self.tuner.restore()
            logger.info("Model ran with %s", self.tuner.summary())


class _Chunks:
    """Collects vectors and hands them to ``on_chunk(indices, vectors)``
    once ``size`` images are pending, and at the end.

    Attributes:
        embedded: the number of vectors collected so far
        dim: their length (``None`` before the first)
    """

    def __init__(self, on_chunk, size):
        self.on_chunk = on_chunk
        self.size = size
        self.indices, self.vectors, self.pending = [], [], 0
        self.embedded = 0
        self.dim = None

    def add(self, indices, vectors):
        self.indices.append(np.asarray(indices, dtype=np.int64))
        self.vectors.append(vectors)
        self.pending += len(indices)
        self.embedded += len(indices)
        self.dim = vectors.shape[1]

    def flush(self, full_only=False):
        """Hands over the pending vectors (with ``full_only``, only once
        ``size`` of them are pending)."""
        if full_only and self.pending < self.size:
            return
        if self.pending and self.on_chunk is not None:
            self.on_chunk(
                np.concatenate(self.indices), np.concatenate(self.vectors)
            )
        self.indices, self.vectors, self.pending = [], [], 0


def _skip(paths, errors, skip_failures, failures):
    """Reports the unreadable files of a batch into ``failures``, or raises
    an :class:`ImageError` for the first when not ``skip_failures``."""
    for i, reason in errors:
        if not skip_failures:
            raise ImageError(paths[i], reason)
        logger.warning("Skipping '%s': %s", paths[i], reason)
        failures.append((paths[i], reason))


def embed_stats(embedded, failures, dim, precision, start):
    """The statistics of a run of an embedder, logged.

    Args:
        embedded: the number of vectors computed
        failures: a list of ``(path, reason)`` of the files that failed
        dim: the vectors' length, or ``None``
        precision: the name of the model's floating-point type, or ``None``
        start: when the run started, as a ``time.perf_counter()`` value

    Returns:
        a dict with ``embedded``, ``failures``, ``dim``, ``precision``,
        ``seconds`` and ``images_per_s``
    """
    seconds = time.perf_counter() - start
    rate = embedded / seconds if seconds > 0 else 0.0
    logger.info(
        "Embedded %d images in %.1f s (%.1f images/s); %d failed",
        embedded,
        seconds,
        rate,
        len(failures),
    )
    return {
        "embedded": embedded,
        "failures": failures,
        "dim": dim,
        "precision": precision,
        "seconds": seconds,
        "images_per_s": rate,
    }


def embed_paths(
    embedder,
    paths,
    batch_size=None,
    num_workers=None,
    skip_failures=True,
    on_chunk=None,
    chunk_size=CHUNK_SIZE,
    progress=None,
    decode="auto",
):
    """Embeds image files with a loaded embedder.

    Args:
        embedder: an :class:`.embedders.Embedder` on which ``load()`` was
            called
        paths: a list of image file paths
        batch_size (None): images per batch; ``None`` picks
            :func:`default_batch_size`
        num_workers (None): worker processes that decode images (threads
            that read files, where they are decoded on the device); ``0``
            decodes in this process; ``None`` picks
            :func:`default_num_workers`
        skip_failures (True): whether a file that cannot be read is reported
            and skipped (otherwise it raises an :class:`ImageError`)
        on_chunk (None): ``on_chunk(indices, vectors)`` is called with an
            int64 array of positions in ``paths`` and the matching ``n x d``
            float32 vectors, every ``chunk_size`` images and at the end
        chunk_size (CHUNK_SIZE): images per chunk
        progress (None): an optional ``progress(fraction, label)``
        decode ("auto"): where images are decoded: ``"auto"`` decodes
            JPEGs on a CUDA device in batches, and preprocesses them there,
            when the embedder's preprocessing is covered (see
            :mod:`.gpu_decode`), and the rest per file on the CPU;
            ``"tensor"`` does the same on any device; ``"pil"`` decodes
            every file on the CPU

    Returns:
        a dict with ``embedded`` (count), ``failures`` (a list of
        ``(path, reason)``), ``dim``, ``precision`` (the model's
        floating-point type, ``None`` without a model), ``seconds`` and
        ``images_per_s``

    Raises:
        ImageError: on the first unreadable file, if not ``skip_failures``
    """
    import torch

    if embedder.transform_ is None:
        raise RuntimeError("Call load() on the embedder first")
    loader = _make_loader(embedder, paths, batch_size, num_workers, decode)
    items = ItemProgress(len(paths), progress, log_every=LOG_EVERY)
    model = _Model(embedder, loader.num_workers)
    chunks = _Chunks(on_chunk, chunk_size)
    failures = []
    try:
        with torch.inference_mode():
            for indices, batch, errors in loader:
                _skip(paths, errors, skip_failures, failures)
                if batch is not None:
                    chunks.add(indices, model(batch))
                chunks.flush(full_only=True)
                items.update(len(indices) + len(errors))
        chunks.flush()
    finally:
        model.close()
    return embed_stats(
        chunks.embedded,
        failures,
        chunks.dim,
        precision_name(model.dtype),
        items.start,
    )
