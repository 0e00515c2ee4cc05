"""Where and in which floating-point type a model runs: the torch device
(:func:`resolve_device`) and the precision (:func:`resolve_precision`)."""

import functools

from .schema import ParamError

PRECISIONS = ("auto", "float32", "bfloat16", "float16")


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
    _check_available(dev, device, has_mps)
    return dev


def _check_available(dev, device, has_mps):
    """Raises a :class:`ParamError` if torch device ``dev`` (asked for as
    ``device``) is not available here."""
    import torch

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
