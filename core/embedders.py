"""Image embedders, one class per embedder, and the loop that runs them.

Each embedder declares its parameters as a schema (see :mod:`.schema`) and
turns image files into float32 vectors:

- ``check()`` validates what the schema cannot (an architecture name, a
  checkpoint path) and fails fast when weights are neither cached nor
  downloadable, naming the weights and how to use a local checkpoint;
- ``build(device)`` builds the model and sets ``transform_``, which turns
  one RGB :class:`PIL.Image.Image` into a tensor (it runs in data loader
  worker processes); ``load(device, precision)`` calls it and puts the model
  in the floating-point type the precision resolves to;
- ``forward(batch)`` maps a batch of tensors to an ``n x d`` tensor.

:func:`embed_paths` runs an embedder over a list of file paths: a torch
``DataLoader`` with worker processes decodes and preprocesses images while the
model runs batched inference under ``torch.inference_mode()`` (float16
autocast on a GPU, bfloat16 weights on a CPU with AMX; see
:func:`resolve_precision`); vectors are handed to a callback in chunks, so
a caller can store them as they come and an interrupted run keeps what was
done.

Adding an embedder means adding one class here, decorated with
``@EMBEDDERS.register``.
"""

import contextlib
import functools
import logging
import os
import socket
import sys
import time
import urllib.parse

import numpy as np

from .schema import Param, ParamError, Registry

logger = logging.getLogger(__name__)

EMBEDDERS = Registry("embedder")

# Vectors are handed to the caller (and stored) at least this often
CHUNK_SIZE = 2048

# Seconds to wait for a weights server before declaring it unreachable
PROBE_TIMEOUT = 3.0

# Seconds between log lines while embedding
LOG_EVERY = 15.0

_TRUE = ("1", "true", "yes", "on")


class WeightsError(RuntimeError):
    """Model weights are neither available locally nor downloadable."""


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


# --------------------------------------------------------------------------
# Devices, images, weights
# --------------------------------------------------------------------------


def resolve_device(device="auto"):
    """Returns the torch device to use.

    Args:
        device ("auto"): ``"auto"`` (CUDA, then Apple MPS, then CPU),
            ``"cpu"``, ``"cuda"``, ``"cuda:<index>"`` or ``"mps"``

    Raises:
        ParamError: if the device is unknown or not available here
    """
    import torch

    device = "auto" if device is None else str(device).strip().lower()
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if has_mps:
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ParamError(
            f"Unknown device {device!r}: use auto, cpu, cuda, cuda:<index> "
            "or mps"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ParamError(
                f"Device {device!r} was requested but CUDA is not available "
                "here; use device='auto' or 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ParamError(
                f"Device {device!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps":
        if not has_mps:
            raise ParamError(
                "Device 'mps' was requested but Apple MPS is not available "
                "here; use device='auto' or 'cpu'"
            )
    elif dev.type != "cpu":
        raise ParamError(
            f"Unsupported device {device!r}: use auto, cpu, cuda or mps"
        )
    return dev


PRECISIONS = ("auto", "float32", "bfloat16", "float16")


@functools.lru_cache(maxsize=None)
def cpu_has_amx():
    """Whether this CPU has Intel AMX bfloat16 units (Sapphire Rapids and
    later), where torch multiplies bfloat16 matrices several times faster
    than float32 ones (ViT-B-32 here: 3.4-4x)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split(":", 1)[1].split()
    except OSError:
        pass
    return False


def resolve_precision(precision, device):
    """Returns the torch floating-point type a model runs in.

    Args:
        precision: ``"auto"`` (float16 on a GPU, bfloat16 on a CPU with
            Intel AMX, float32 otherwise), ``"float32"``, ``"bfloat16"``
            or ``"float16"``
        device: the torch device the model runs on

    Raises:
        ParamError: if ``precision`` is unknown
    """
    import torch

    name = "auto" if precision is None else str(precision).strip().lower()
    if name not in PRECISIONS:
        raise ParamError(
            f"Unknown precision {precision!r}: use {', '.join(PRECISIONS)}"
        )
    if name == "auto":
        if device.type in ("cuda", "mps"):
            name = "float16"
        elif cpu_has_amx():
            name = "bfloat16"
        else:
            name = "float32"
    return getattr(torch, name)


def precision_name(dtype):
    """``"bfloat16"`` for ``torch.bfloat16``; ``None`` for ``None``."""
    return None if dtype is None else str(dtype).replace("torch.", "")


def load_image(path):
    """Reads an image file as an RGB :class:`PIL.Image.Image`, with its EXIF
    orientation applied (as the App shows it).

    Raises:
        OSError: if the file is missing, unreadable, truncated or not an
            image
    """
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        return img.convert("RGB")


def _offline_env():
    return any(
        os.environ.get(k, "").strip().lower() in _TRUE
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


_PROBES = {}


def host_reachable(host, port=443, timeout=PROBE_TIMEOUT):
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds
    (the answer is remembered for a minute)."""
    now = time.monotonic()
    cached = _PROBES.get((host, port))
    if cached is not None and now - cached[1] < 60:
        return cached[0]
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        ok = True
    except OSError:
        ok = False
    _PROBES[(host, port)] = (ok, now)
    return ok


def check_downloadable(url, what, hint):
    """Raises a :class:`WeightsError` at once if ``url`` cannot be fetched:
    when hub downloads are switched off (``HF_HUB_OFFLINE``) for Hugging
    Face URLs, or when its host does not answer within
    :data:`PROBE_TIMEOUT` seconds.

    Args:
        url: where the weights would come from
        what: a description of the weights, for the message
        hint: how to proceed without downloading, for the message
    """
    host = urllib.parse.urlparse(url).hostname or url
    if "huggingface.co" in host and _offline_env():
        reason = "HF_HUB_OFFLINE is set, so nothing is downloaded"
    elif not host_reachable(host):
        reason = f"{host} cannot be reached from this machine"
    else:
        return
    raise WeightsError(
        f"The weights {what} are not in the local cache and cannot be "
        f"downloaded ({reason}). {hint}"
    )


@contextlib.contextmanager
def hub_offline_unless_reachable():
    """Puts the Hugging Face hub client in offline mode for the duration if
    huggingface.co cannot be reached, so cached files load at once instead
    of after a minute of retries."""
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    before = constants.HF_HUB_OFFLINE
    if not before and not host_reachable("huggingface.co"):
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _local_file(value):
    """Returns ``value`` as an existing file path, or ``None``."""
    path = os.path.abspath(os.path.expanduser(value))
    return path if os.path.isfile(path) else None


def _looks_like_path(value):
    return (
        os.sep in value
        or value.startswith("~")
        or value.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))
    )


def _load_state_dict(path):
    """Loads a checkpoint file into a state dict."""
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(state.get(key), dict):
                return state[key]
    return state


# --------------------------------------------------------------------------
# Embedders
# --------------------------------------------------------------------------


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
        in_core: whether :func:`embed_paths` runs it (``False`` for
            embedders that run elsewhere, like FiftyOne zoo models)
    """

    name = None
    label = None
    description = None
    params = ()
    normalize = False
    uses_model = True
    in_core = True

    def __init__(self, **params):
        self.params_ = EMBEDDERS.resolve(self.name, params)
        self.model_ = None
        self.transform_ = None
        self.device_ = None
        self.dtype_ = None

    def check(self):
        """Validates what the schema cannot, and that the weights can be
        had; fails fast.

        Raises:
            ParamError: on a bad parameter
            WeightsError: if the weights cannot be had
        """

    def load(self, device="cpu", precision="auto"):
        """Builds the model on ``device``, in the floating-point type that
        ``precision`` resolves to (see :func:`resolve_precision`), and sets
        ``transform_``; returns ``self``."""
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

    def build(self, device):
        """Builds the model (in float32) on ``device`` and sets
        ``transform_``."""
        raise NotImplementedError

    def forward(self, x):
        """Maps a batch tensor to an ``n x d`` tensor."""
        return self.model_(x)

    def describe(self):
        """A short description of the configured embedder, for logs."""
        args = ", ".join(f"{k}={v}" for k, v in self.params_.items())
        return f"{self.name}({args})"


def _weights_hint(key, example):
    return (
        f"Download them on a machine with internet access, or pass a local "
        f"checkpoint file instead: {key}='/path/to/checkpoint.pt' "
        f"(for example one saved with {example})"
    )


@EMBEDDERS.register
class OpenClip(Embedder):
    """CLIP image encoders from open_clip; L2-normalised vectors."""

    name = "open_clip"
    label = "CLIP (open_clip)"
    description = (
        "CLIP image embeddings from open_clip: semantic similarity that "
        "matches how people group images. L2-normalised."
    )
    params = (
        Param(
            "arch",
            str,
            "ViT-B-32",
            "open_clip architecture, as in open_clip.list_models().",
        ),
        Param(
            "pretrained",
            str,
            "laion2b_s34b_b79k",
            "Pretrained tag (see open_clip.list_pretrained()) or the path "
            "of a local checkpoint file.",
        ),
    )
    normalize = True

    def check(self):
        import open_clip

        arch = self.params_["arch"]
        pretrained = self.params_["pretrained"]
        archs = open_clip.list_models()
        if arch not in archs:
            import difflib

            close = difflib.get_close_matches(arch, archs, n=5, cutoff=0.5)
            near = f" Close matches: {', '.join(close)}." if close else ""
            raise ParamError(
                f"Unknown open_clip architecture {arch!r} "
                f"(open_clip__arch).{near} See open_clip.list_models() for "
                f"all {len(archs)}"
            )
        if _local_file(pretrained):
            return
        if _looks_like_path(pretrained):
            raise ParamError(
                f"Checkpoint file not found: {pretrained!r} "
                "(open_clip__pretrained)"
            )
        tags = open_clip.list_pretrained_tags_by_model(arch)
        if pretrained not in tags:
            raise ParamError(
                f"Unknown pretrained tag {pretrained!r} for open_clip "
                f"architecture {arch!r} (open_clip__pretrained). Tags: "
                f"{', '.join(tags) or '(none)'}; or give the path of a "
                "local checkpoint file"
            )
        if self._cached_file() is None:
            cfg = open_clip.get_pretrained_cfg(arch, pretrained)
            hub = cfg.get("hf_hub", "")
            url = (
                f"https://huggingface.co/{hub}" if hub else cfg.get("url", "")
            )
            check_downloadable(
                url,
                f"'{pretrained}' of open_clip model '{arch}'",
                _weights_hint(
                    "open_clip__pretrained",
                    "torch.save(model.state_dict(), path)",
                ),
            )

    def _cached_file(self):
        """The locally cached weights file of a pretrained tag, or None."""
        import open_clip
        from open_clip import pretrained as ocp

        arch = self.params_["arch"]
        cfg = open_clip.get_pretrained_cfg(arch, self.params_["pretrained"])
        if not cfg:
            return None
        if "file" in cfg:
            return cfg["file"]
        hub = cfg.get("hf_hub", "")
        if hub:
            from huggingface_hub import try_to_load_from_cache

            repo_id, filename = os.path.split(hub)
            filename = filename or ocp.HF_WEIGHTS_NAME
            names = [filename]
            try:
                names = list(ocp._get_safe_alternatives(filename)) + names
            except AttributeError:
                pass
            for name in names:
                found = try_to_load_from_cache(repo_id, name)
                if isinstance(found, str):
                    return found
        url = cfg.get("url", "")
        if url:
            path = os.path.join(
                os.path.expanduser("~/.cache/clip"), os.path.basename(url)
            )
            if os.path.isfile(path):
                return path
        return None

    def build(self, device):
        import open_clip

        self.check()
        pretrained = self.params_["pretrained"]
        pretrained = _local_file(pretrained) or pretrained
        with hub_offline_unless_reachable():
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.params_["arch"], pretrained=pretrained, device=device
            )
        model.eval()
        self.model_ = model
        self.transform_ = preprocess

    def forward(self, x):
        return self.model_.encode_image(x)


_TORCHVISION_HEADS = {
    # arch: (attribute holding the classifier, what to keep of it)
    "resnet50": ("fc", None),
    "efficientnet_b0": ("classifier", None),
    "vgg19": ("classifier", -1),
}


@EMBEDDERS.register
class TorchVision(Embedder):
    """Classic ImageNet CNNs from torchvision, classifier head removed."""

    name = "torchvision"
    label = "ImageNet CNN (torchvision)"
    description = (
        "Penultimate-layer features of an ImageNet classifier from "
        "torchvision (ResNet-50: 2048-d, EfficientNet-B0: 1280-d, "
        "VGG-19: 4096-d)."
    )
    params = (
        Param(
            "arch",
            str,
            "resnet50",
            "Network.",
            choices=tuple(_TORCHVISION_HEADS),
        ),
        Param(
            "weights",
            str,
            "DEFAULT",
            "DEFAULT (torchvision's best ImageNet weights) or the path of a "
            "local state_dict file for this network.",
        ),
    )

    def _weights_enum(self):
        import torchvision

        return torchvision.models.get_model_weights(
            self.params_["arch"]
        ).DEFAULT

    def check(self):
        import torch

        weights = self.params_["weights"]
        if weights == "DEFAULT":
            url = self._weights_enum().url
            cached = os.path.join(
                torch.hub.get_dir(), "checkpoints", os.path.basename(url)
            )
            if not os.path.isfile(cached):
                check_downloadable(
                    url,
                    f"DEFAULT of torchvision model "
                    f"'{self.params_['arch']}' ({os.path.basename(url)})",
                    _weights_hint(
                        "torchvision__weights",
                        "torch.save(model.state_dict(), path)",
                    ),
                )
        elif not _local_file(weights):
            raise ParamError(
                f"torchvision__weights must be DEFAULT or the path of a "
                f"local weights file; file not found: {weights!r}"
            )

    def build(self, device):
        import torch
        import torchvision

        self.check()
        arch = self.params_["arch"]
        weights = self.params_["weights"]
        enum = self._weights_enum()
        model = torchvision.models.get_model(arch, weights=None)
        if weights == "DEFAULT":
            state = enum.get_state_dict(progress=False, check_hash=True)
        else:
            state = _load_state_dict(_local_file(weights))
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            first = str(e).strip().splitlines()[0] if str(e) else ""
            raise ParamError(
                f"The weights file {weights!r} does not fit torchvision "
                f"model '{arch}': {first}"
            ) from None
        attr, keep = _TORCHVISION_HEADS[arch]
        if keep is None:
            setattr(model, attr, torch.nn.Identity())
        else:
            setattr(model, attr, getattr(model, attr)[:keep])
        model.eval().to(device)
        self.model_ = model
        self.transform_ = enum.transforms()


class PixelsTransform:
    """Resizes an RGB image to a ``size`` x ``size`` square and returns its
    pixels in ``[0, 1]`` as a flat float32 tensor."""

    def __init__(self, size, grayscale):
        self.size = size
        self.grayscale = grayscale

    def __call__(self, img):
        import torch
        from PIL import Image

        img = img.resize((self.size, self.size), Image.Resampling.BILINEAR)
        if self.grayscale:
            img = img.convert("L")
        arr = np.asarray(img, dtype=np.float32).reshape(-1) / 255.0
        return torch.from_numpy(arr)


@EMBEDDERS.register
class Pixels(Embedder):
    """Raw pixels of a small thumbnail: no weights, no network."""

    name = "pixels"
    label = "Pixels (no model)"
    description = (
        "Flattened pixels of a small square thumbnail. Needs no weights; "
        "groups images by colour and layout, not by content."
    )
    params = (
        Param(
            "size",
            int,
            16,
            "Side of the square thumbnail, in pixels.",
            min=2,
            max=128,
        ),
        Param(
            "color",
            str,
            "rgb",
            "Keep colour (rgb) or only brightness (grayscale).",
            choices=("rgb", "grayscale"),
        ),
    )
    uses_model = False

    def build(self, device):
        p = self.params_
        self.transform_ = PixelsTransform(p["size"], p["color"] == "grayscale")

    def forward(self, x):
        return x


@EMBEDDERS.register
class Zoo(Embedder):
    """Any FiftyOne zoo model that exposes embeddings. It runs through
    FiftyOne's own ``compute_embeddings``, outside :mod:`core`."""

    name = "zoo"
    label = "FiftyOne zoo model"
    description = (
        "Any model of the FiftyOne model zoo that exposes embeddings "
        "(fiftyone.zoo.list_zoo_models(tags='embeddings')), run by "
        "FiftyOne's compute_embeddings."
    )
    params = (
        Param(
            "name",
            str,
            "clip-vit-base32-torch",
            "Zoo model name.",
        ),
    )
    in_core = False

    def build(self, device):
        raise NotImplementedError(
            "Zoo models run through FiftyOne, not embed_paths()"
        )


# --------------------------------------------------------------------------
# The embedding loop
# --------------------------------------------------------------------------


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
    """Worker processes that decode images: on a CPU, leave the model all
    but one core (up to 4 workers); on a GPU, or without a model, decoding
    is the bottleneck: up to 8."""
    n = _n_cpus()
    if device.type == "cpu" and uses_model:
        return max(1, min(4, n - 1))
    return max(1, min(8, n))


def default_batch_size(device, uses_model=True):
    """Images per batch: 16 on a CPU, 64 on a GPU, 256 without a model."""
    if not uses_model:
        return 256
    return 16 if device.type == "cpu" else 64


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


class _ThreadTuner:
    """Chooses torch's intra-op thread count on a CPU by timing the model.

    All cores are fastest on an idle machine, but a decoding worker or any
    other busy process makes the model's OpenMP threads wait for each
    other, and then fewer threads run faster (on a shared 2-core machine,
    one thread ran twice as fast as two). The model starts with one thread
    per core not taken by a decoding worker. Now and then, the end of a
    batch runs as paired probes: ``probe`` images with the current count,
    then ``probe`` images with each other count (the end of a batch, when
    the workers have refilled their queue; equal sizes, so the comparison
    is fair). A count that is 15% faster than the current one on the median
    of its last probes (or 30% faster on the first) takes over. The first
    batch is probed already (its one-off setup costs fall on the part run
    before the probes; the first probe of each other count only warms it
    up). Probes are repeated less and less often while nothing changes. The
    previous count is restored at the end.

    Args:
        base: the thread count to start with
        others: other thread counts to try
        probe (2): images per probe
        every (20): batches between probes once the first two are done;
            doubles each time nothing changes, up to 640
    """

    def __init__(self, base, others, probe=2, every=20):
        import collections

        import torch

        self.torch = torch
        self.deque = collections.deque
        self.original = torch.get_num_threads()
        self.best = base
        self.probe = probe
        self.every = every
        self.first_every = every
        self.counts = sorted(set(others) | {base})
        self.ratios = {c: self.deque(maxlen=3) for c in self.counts}
        self.ms = {}
        # Thread counts run once: the first run of a count sets up its
        # kernels (oneDNN's, in bfloat16) and is not timed fairly
        self.warm = {base}
        self.batches = 0
        self.next_probe = 1
        self.current = None

    def _use(self, n):
        if n != self.current:
            self.torch.set_num_threads(n)
            self.current = n

    def _timed(self, forward, batch, n):
        self._use(n)
        start = time.perf_counter()
        out = forward(batch)
        seconds = (time.perf_counter() - start) / len(batch)
        self.ms[n] = 1000 * seconds
        return out, seconds

    def run(self, forward, batch):
        """Returns ``forward(batch)``, probing thread counts on the way."""
        self.batches += 1
        others = [c for c in self.counts if c != self.best]
        k = self.probe
        if (
            self.batches < self.next_probe
            or len(batch) < k * (len(others) + 1) + 1
        ):
            self._use(self.best)
            return forward(batch)

        split = len(batch) - k * (len(others) + 1)
        self._use(self.best)
        outs = [forward(batch[:split])]
        out, base = self._timed(forward, batch[split : split + k], self.best)
        outs.append(out)
        for i, n in enumerate(others):
            start = split + k * (i + 1)
            out, seconds = self._timed(forward, batch[start : start + k], n)
            outs.append(out)
            if n in self.warm:
                self.ratios[n].append(seconds / base)
            self.warm.add(n)
        self._use(self.best)
        self._decide(others)
        return self.torch.cat(outs)

    def _decide(self, others):
        if not all(self.ratios[n] for n in others):
            self.next_probe = self.batches + 1
            return
        median = {
            n: sorted(self.ratios[n])[len(self.ratios[n]) // 2] for n in others
        }
        fastest = min(median, key=median.get)
        n_probes = len(self.ratios[fastest])
        if median[fastest] < (0.85 if n_probes >= 2 else 0.7):
            self.best = fastest
            self.ratios = {c: self.deque(maxlen=3) for c in self.counts}
            self.every = self.first_every
            self.next_probe = self.batches + 1  # confirm soon
            return
        if all(len(self.ratios[n]) >= 2 for n in others):
            self.next_probe = self.batches + self.every
            self.every = min(640, 2 * self.every)
        else:
            self.next_probe = self.batches + 1

    def restore(self):
        self.torch.set_num_threads(self.original)

    def summary(self):
        timed = ", ".join(
            f"{c}: {self.ms[c]:.0f} ms/image"
            for c in self.counts
            if c in self.ms
        )
        return f"{self.best} CPU threads (last probes {timed})"


def _thread_tuner(num_workers):
    """A :class:`_ThreadTuner` that starts with one thread per core not
    taken by a decoding worker and also tries all of torch's threads and
    half of them; ``None`` when there is nothing to choose."""
    import torch

    n = torch.get_num_threads()
    base = max(1, n - num_workers)
    others = {n, max(1, n // 2)} - {base}
    return _ThreadTuner(base, others) if others else None


class _Progress:
    """Reports progress to a callback and to the log, with images/s."""

    def __init__(self, total, callback):
        self.total = total
        self.callback = callback
        self.start = time.perf_counter()
        self.last_log = self.start
        self.done = 0

    def rate(self):
        dt = time.perf_counter() - self.start
        return self.done / dt if dt > 0 else 0.0

    def update(self, n):
        self.done += n
        rate = self.rate()
        label = f"{self.done:,}/{self.total:,} images, {rate:.1f} images/s"
        if self.callback is not None:
            self.callback(self.done / max(1, self.total), label)
        now = time.perf_counter()
        if now - self.last_log >= LOG_EVERY:
            self.last_log = now
            logger.info("Embedded %s", label)


def embed_paths(
    embedder,
    paths,
    batch_size=None,
    num_workers=None,
    skip_failures=True,
    on_chunk=None,
    chunk_size=CHUNK_SIZE,
    progress=None,
):
    """Embeds image files with a loaded embedder.

    Args:
        embedder: an :class:`Embedder` on which ``load()`` was called
        paths: a list of image file paths
        batch_size (None): images per batch; ``None`` picks
            :func:`default_batch_size`
        num_workers (None): worker processes that decode images; ``0``
            decodes in this process; ``None`` picks
            :func:`default_num_workers`
        skip_failures (True): whether a file that cannot be read is reported
            and skipped (otherwise it raises an :class:`ImageError`)
        on_chunk (None): ``on_chunk(indices, vectors)`` is called with an
            int64 array of positions in ``paths`` and the matching ``n x d``
            float32 vectors, every ``chunk_size`` images and at the end
        chunk_size (CHUNK_SIZE): images per chunk
        progress (None): an optional ``progress(fraction, label)``

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
    device = torch.device(embedder.device_ or "cpu")
    n = len(paths)
    if batch_size is None:
        batch_size = default_batch_size(device, embedder.uses_model)
    if num_workers is None:
        num_workers = default_num_workers(device, embedder.uses_model)
        if n <= batch_size:
            num_workers = 0
    context, num_workers = _worker_context(num_workers)
    dtype = embedder.dtype_

    loader = torch.utils.data.DataLoader(
        _Images(list(paths), embedder.transform_),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        multiprocessing_context=context,
        prefetch_factor=4 if num_workers else None,
        persistent_workers=False,
    )
    logger.info(
        "Embedding %d images with %s on %s%s (batch size %d, %d workers)",
        n,
        embedder.describe(),
        device,
        f" in {precision_name(dtype)}" if dtype is not None else "",
        batch_size,
        num_workers,
    )

    report = _Progress(n, progress)
    failures = []
    chunk_idx, chunk_vecs, pending = [], [], 0
    embedded = 0
    dim = None

    def flush():
        nonlocal chunk_idx, chunk_vecs, pending
        if pending and on_chunk is not None:
            on_chunk(
                np.asarray(np.concatenate(chunk_idx), dtype=np.int64),
                np.concatenate(chunk_vecs),
            )
        chunk_idx, chunk_vecs, pending = [], [], 0

    autocast = contextlib.nullcontext()
    if dtype is not None and dtype != torch.float32 and device.type != "cpu":
        try:
            autocast = torch.autocast(device.type, dtype=dtype)
        except RuntimeError as e:  # a type this device cannot autocast to
            logger.warning("Running in float32: %s", e)
            dtype = torch.float32
    # On a CPU the model's weights are already in ``dtype`` (None: no model)
    cast = dtype if device.type == "cpu" else None
    tuner = None
    if embedder.uses_model and device.type == "cpu":
        tuner = _thread_tuner(num_workers)
    try:
        with torch.inference_mode():
            for indices, batch, errors in loader:
                for i, reason in errors:
                    if not skip_failures:
                        raise ImageError(paths[i], reason)
                    logger.warning("Skipping '%s': %s", paths[i], reason)
                    failures.append((paths[i], reason))
                if batch is not None:
                    batch = batch.to(device, dtype=cast, non_blocking=True)
                    with autocast:
                        if tuner is not None:
                            out = tuner.run(embedder.forward, batch)
                        else:
                            out = embedder.forward(batch)
                    out = out.float()
                    if embedder.normalize:
                        out = torch.nn.functional.normalize(out, dim=1)
                    vecs = out.cpu().numpy().astype(np.float32, copy=False)
                    dim = vecs.shape[1]
                    chunk_idx.append(np.asarray(indices, dtype=np.int64))
                    chunk_vecs.append(vecs)
                    pending += len(indices)
                    embedded += len(indices)
                if pending >= chunk_size:
                    flush()
                report.update(len(indices) + len(errors))
        flush()
    finally:
        if tuner is not None:
            tuner.restore()
            logger.info("Model ran with %s", tuner.summary())

    seconds = time.perf_counter() - report.start
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
        "precision": precision_name(dtype),
        "seconds": seconds,
        "images_per_s": rate,
    }


def embed_files(name, paths, device="cpu", precision="auto", **params):
    """Convenience: embeds files with embedder ``name`` and returns an
    ``len(paths) x d`` float32 matrix (raises on any unreadable file)."""
    embedder = EMBEDDERS.get(name)(**params)
    if not embedder.in_core:
        raise ParamError(f"Embedder '{name}' does not run in core")
    embedder.load(resolve_device(device), precision)
    out = {}

    def keep(indices, vectors):
        out.update(zip(indices.tolist(), vectors))

    embed_paths(embedder, paths, skip_failures=False, on_chunk=keep)
    return np.stack([out[i] for i in range(len(paths))])
