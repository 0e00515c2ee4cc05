"""Image embedders, one class per embedder, in the registry
:data:`EMBEDDERS`.

Each embedder declares its parameters as a schema (see :mod:`.schema`) and
turns images into float32 vectors. The API runs every embedder the same
way, through the methods of :class:`.embedder_base.Embedder`:

- ``resolve_options(device, precision)`` validates where and in which
  floating-point type it is to run, before anything is read;
- ``check()`` validates what the schema cannot (an architecture name, a
  checkpoint path) and fails fast when weights are neither cached nor
  downloadable, naming the weights and how to use a local checkpoint (see
  :mod:`.weights`);
- ``load(device, precision)`` builds the model;
- ``embed(job)`` embeds the images of an :class:`.embedder_base.EmbedJob`,
  handing their vectors to the job's ``on_chunk`` callback in chunks, and
  returns its statistics.

The embedders here run in :func:`.embed_loop.embed_paths`: ``build(device)``
builds the model and sets ``transform_``, which turns one RGB
:class:`PIL.Image.Image` into a tensor (it runs in data loader worker
processes), and ``forward(batch)`` maps a batch of tensors to an ``n x d``
tensor. An embedder that needs more than files (the FiftyOne zoo models)
is registered from the layer that may import FiftyOne and overrides the
methods above.

Adding an embedder means adding one class here, decorated with
``@EMBEDDERS.register``. This module also re-exports the names of the
modules it is built on, so ``core.embedders.<name>`` reaches them all.
"""

import difflib
import os

import numpy as np
from PIL import Image

from .devices import (
    PRECISIONS,
    cpu_has_amx,
    precision_name,
    resolve_device,
    resolve_precision,
)
from .embed_loop import CHUNK_SIZE, ImageError, embed_paths, load_image
from .embedder_base import EMBEDDERS, EmbedJob, Embedder
from .gpu_decode import BatchTransform
from .schema import Param, ParamError
from .weights import (
    PROBE_TIMEOUT,
    WeightsError,
    check_downloadable,
    hf_cached_file,
    host_reachable,
    hub_offline_unless_reachable,
    load_state_dict,
    local_file,
    looks_like_path,
    weights_hint,
)

__all__ = [
    "CHUNK_SIZE",
    "EMBEDDERS",
    "PRECISIONS",
    "PROBE_TIMEOUT",
    "EmbedJob",
    "Embedder",
    "ImageError",
    "OpenClip",
    "ParamError",
    "Pixels",
    "PixelsTransform",
    "TorchVision",
    "WeightsError",
    "check_downloadable",
    "cpu_has_amx",
    "embed_files",
    "embed_paths",
    "host_reachable",
    "hub_offline_unless_reachable",
    "load_image",
    "precision_name",
    "resolve_device",
    "resolve_precision",
]


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
            close = difflib.get_close_matches(arch, archs, n=5, cutoff=0.5)
            near = f" Close matches: {', '.join(close)}." if close else ""
            raise ParamError(
                f"Unknown open_clip architecture {arch!r} "
                f"(open_clip__arch).{near} See open_clip.list_models() for "
                f"all {len(archs)}"
            )
        if local_file(pretrained):
            return
        if looks_like_path(pretrained):
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
                weights_hint(
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
            found = hf_cached_file(
                hub,
                ocp.HF_WEIGHTS_NAME,
                getattr(ocp, "_get_safe_alternatives", None),
            )
            if found is not None:
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
        pretrained = local_file(pretrained) or pretrained
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
                    weights_hint(
                        "torchvision__weights",
                        "torch.save(model.state_dict(), path)",
                    ),
                )
        elif not local_file(weights):
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
            state = load_state_dict(local_file(weights))
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

    def batched(self):
        """The same on a batch of ``uint8`` images ``N x 3 x H x W``, as a
        :class:`.gpu_decode.BatchTransform`: bilinear resize with
        antialiasing (as PIL's), PIL's integer greyscale, then the pixels
        row by row (height, width, channel), as ``numpy.asarray`` of a PIL
        image orders them."""
        import torch
        import torchvision.transforms.functional as TF

        size, gray = self.size, self.grayscale

        def resize(x):
            return TF.resize(
                x,
                [size, size],
                interpolation=TF.InterpolationMode.BILINEAR,
                antialias=True,
            )

        def flatten(x):
            x = x.to(torch.float32)
            if gray:  # ITU-R 601-2 luma, rounded as PIL rounds it
                w = x.new_tensor([19595.0, 38470.0, 7471.0]).view(1, 3, 1, 1)
                x = torch.floor(((x * w).sum(1, keepdim=True) + 32768) / 65536)
            return x.permute(0, 2, 3, 1).reshape(len(x), -1) / 255.0

        name = f"pixels {size}x{size}{' grayscale' if gray else ''}"
        return BatchTransform([resize, flatten], name)

    def __call__(self, img):
        import torch

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

    def batch_transform(self):
        return self.transform_.batched()

    def forward(self, x):
        return x


def embed_files(name, paths, device="cpu", precision="auto", **params):
    """Convenience: embeds files with embedder ``name`` and returns an
    ``len(paths) x d`` float32 matrix (raises on any unreadable file)."""
    embedder = EMBEDDERS.get(name)(**params)
    device, precision = embedder.resolve_options(device, precision)
    embedder.check()
    embedder.load(device, precision)
    out = {}

    def keep(indices, vectors):
        out.update(zip(indices.tolist(), vectors))

    embedder.embed(EmbedJob(list(paths), skip_failures=False, on_chunk=keep))
    return np.stack([out[i] for i in range(len(paths))])
