"""The interface every embedder implements (:class:`Embedder`), what it
is given to embed (:class:`EmbedJob`), and the registry of embedders
(:data:`EMBEDDERS`). The embedders themselves are in :mod:`.embedders`
(and, for those that need FiftyOne, in the API)."""

import dataclasses

from .devices import resolve_device, resolve_precision
from .embed_loop import CHUNK_SIZE, embed_paths
from .gpu_decode import batch_transform
from .schema import Registry

EMBEDDERS = Registry("embedder")


@dataclasses.dataclass
class EmbedJob:
    """The images an embedder embeds, how, and where their vectors go.

    Attributes:
        paths: the image file of each item
        ids (None): the sample id of each item, when they are samples
        samples (None): those samples (a FiftyOne collection), for
            embedders that run on samples rather than files
        batch_size (None): images per batch; ``None`` lets the embedder
            choose
        num_workers (None): worker processes that decode images; ``0``
            decodes in this process; ``None`` lets the embedder choose
        skip_failures (True): whether an image that cannot be read is
            reported and skipped (otherwise it raises an error naming it)
        on_chunk (None): ``on_chunk(indices, vectors)`` is called with an
            int64 array of positions in ``paths`` and the matching
            ``n x d`` float32 vectors, in chunks of about ``chunk_size``
        chunk_size (CHUNK_SIZE): images per chunk
        progress (None): an optional ``progress(fraction, label)``
        decode ("auto"): where images are decoded (see
            :func:`.embed_loop.embed_paths`)
    """

    paths: list
    ids: list = None
    samples: object = None
    batch_size: int = None
    num_workers: int = None
    skip_failures: bool = True
    on_chunk: object = None
    chunk_size: int = CHUNK_SIZE
    progress: object = None
    decode: str = "auto"


class Embedder:
    """Base class of the embedders.

    Class attributes:
        name: the registry name, used as the ``<name>__<param>`` prefix
        label: a human name for forms
        description: one sentence for forms and docs
        params: the parameter schema
        normalize: whether vectors are scaled to unit L2 norm
        uses_model: whether there is a neural network to run (a device and
            autocast matter)
    """

    name = None
    label = None
    description = None
    params = ()
    normalize = False
    uses_model = True

    def __init__(self, **params):
        self.params_ = EMBEDDERS.resolve(self.name, params)
        self.model_ = None
        self.transform_ = None
        self.device_ = None
        self.dtype_ = None

    def resolve_options(self, device="auto", precision="auto"):
        """Validates where and in which precision the embedder is to run;
        called before anything is read.

        Args:
            device ("auto"): see :func:`.devices.resolve_device`
            precision ("auto"): see :func:`.devices.resolve_precision`

        Returns:
            ``(device, precision)``, as :meth:`load` takes them

        Raises:
            ParamError: on an unknown or unavailable device, or an unknown
                precision
        """
        device = resolve_device(device)
        resolve_precision(precision, device)  # an unknown one fails here
        return device, precision

    def check(self):
        """Validates what the schema cannot, and that the weights can be
        had; fails fast.

        Raises:
            ParamError: on a bad parameter
            WeightsError: if the weights cannot be had
        """

    def load(self, device="cpu", precision="auto"):
        """Builds the model on ``device``, in the floating-point type that
        ``precision`` resolves to (see :func:`.devices.resolve_precision`),
        and sets ``transform_``; returns ``self``."""
        import torch

        device = torch.device(device)
        self.device_ = device
        self.dtype_ = None
        if self.uses_model:
            self.dtype_ = resolve_precision(precision, device)
        self.build(device)
        if self.model_ is not None and device.type == "cpu":
            # On a CPU the weights themselves are converted: autocast would
            # convert them again for every batch (slower than float32 here)
            self.model_.to(self.dtype_)
        return self

    def embed(self, job):
        """Embeds the images of a job with the loaded embedder; what the
        API calls for every embedder.

        Args:
            job: an :class:`EmbedJob`

        Returns:
            its statistics, as :func:`.embed_loop.embed_paths` returns them
            (``embedded``, ``failures`` as ``(path, reason)``, ``dim``,
            ``precision``, ``seconds`` and ``images_per_s``)

        Raises:
            ImageError: on the first unreadable file, if not
                ``job.skip_failures`` (embedders that run elsewhere raise
                their own error, naming the file)
        """
        return embed_paths(
            self,
            job.paths,
            batch_size=job.batch_size,
            num_workers=job.num_workers,
            skip_failures=job.skip_failures,
            on_chunk=job.on_chunk,
            chunk_size=job.chunk_size,
            progress=job.progress,
            decode=job.decode,
        )

    def build(self, device):
        """Builds the model (in float32) on ``device`` and sets
        ``transform_``."""
        raise NotImplementedError

    def batch_transform(self):
        """The preprocessing of ``transform_`` as a
        :class:`.gpu_decode.BatchTransform` on batches of decoded images,
        or ``None`` where it is not covered (the images are then decoded
        per file on the CPU)."""
        return batch_transform(self.transform_)

    def forward(self, x):
        """Maps a batch tensor to an ``n x d`` tensor."""
        return self.model_(x)

    def describe(self):
        """A short description of the configured embedder, for logs."""
        args = ", ".join(f"{k}={v}" for k, v in self.params_.items())
        return f"{self.name}({args})"
