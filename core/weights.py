"""Model weights: whether they can be had, fast, and local checkpoints.

A model whose weights are neither cached nor downloadable fails at once
with a :class:`WeightsError` that names the weights and says how to use a
local checkpoint instead (model hubs otherwise retry for a minute first).
"""

import contextlib
import os
import socket
import time
import urllib.parse

# Seconds to wait for a weights server before declaring it unreachable
PROBE_TIMEOUT = 3.0

_TRUE = ("1", "true", "yes", "on")

# (host, port) -> (reachable, when it was probed)
_PROBES = {}


class WeightsError(RuntimeError):
    """Model weights are neither available locally nor downloadable."""


def _offline_env():
    return any(
        os.environ.get(k, "").strip().lower() in _TRUE
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


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
    try:  # optional, and slow to import: it comes with open_clip
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


def weights_hint(key, example):
    """How to go on without downloading: a local checkpoint passed as the
    parameter ``key``, saved for example with ``example``."""
    return (
        f"Download them on a machine with internet access, or pass a local "
        f"checkpoint file instead: {key}='/path/to/checkpoint.pt' "
        f"(for example one saved with {example})"
    )


def local_file(value):
    """Returns ``value`` as an existing file path, or ``None``."""
    path = os.path.abspath(os.path.expanduser(value))
    return path if os.path.isfile(path) else None


def looks_like_path(value):
    """Whether ``value`` was meant as a file path (not a weights tag)."""
    return (
        os.sep in value
        or value.startswith("~")
        or value.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))
    )


def load_state_dict(path):
    """Loads a checkpoint file into a state dict.

    Raises:
        WeightsError: if the file is not a checkpoint torch can read
    """
    import torch

    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file  # optional, imports torch

            return load_file(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # whatever the file holds, say what it is not
        raise WeightsError(
            f"'{path}' is not a checkpoint file of weights that torch can "
            f"load ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None
    if not isinstance(state, dict):
        raise WeightsError(
            f"'{path}' holds a {type(state).__name__}, not a state dict of "
            "weights"
        )
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(state.get(key), dict):
                return state[key]
    return state


def hf_cached_file(hub, default_name, alternatives=None):
    """The file of a Hugging Face hub entry ``"<repo id>/<file>"`` in the
    local cache, or ``None``.

    Args:
        hub: the repo id and, optionally, the file name
        default_name: the file name when ``hub`` names none
        alternatives (None): an optional ``alternatives(name)`` giving
            other names tried first (e.g. a ``.safetensors`` twin)
    """
    from huggingface_hub import try_to_load_from_cache  # optional, slow

    repo_id, filename = os.path.split(hub)
    filename = filename or default_name
    names = [filename]
    if alternatives is not None:
        names = list(alternatives(filename)) + names
    for name in names:
        found = try_to_load_from_cache(repo_id, name)
        if isinstance(found, str):
            return found
    return None
