"""Clustering runs in words: the readable summary that the run info, the
operators' results and the docs show before any raw numbers."""

from .methods import METHODS, SCORE_KINDS
from .metrics import NOISE_ID

# What each quality metric measures, and which direction is better
METRICS = {
    "silhouette": (
        "silhouette",
        "from -1 to 1, higher is better: how much closer samples are to "
        "their own cluster than to the next one",
    ),
    "davies_bouldin": (
        "Davies-Bouldin index",
        "0 or more, lower is better: how similar each cluster is to its "
        "most similar neighbour, relative to their spread",
    ),
    "calinski_harabasz": (
        "Calinski-Harabasz index",
        "0 or more, higher is better: spread between clusters over spread "
        "within them",
    ),
    "noise_fraction": (
        "noise",
        "the share of samples in no cluster (id -1)",
    ),
}


def _number(value):
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _params(params):
    shown = [f"{k}={_number(v)}" for k, v in params.items() if v is not None]
    return ", ".join(shown) or "defaults"


def _sizes(clusters):
    sizes = sorted(
        (c.get("size", 0) for cid, c in clusters.items() if cid != NOISE_ID),
        reverse=True,
    )
    if not sizes:
        return "no clusters"
    head = ", ".join(f"{s:,}" for s in sizes[:10])
    more = f", ... ({len(sizes)} in all)" if len(sizes) > 10 else ""
    return f"sizes {head}{more} (largest {sizes[0]:,}, smallest {sizes[-1]:,})"


def metric_lines(metrics, density_based):
    """One line per quality metric that has a value, with what it means;
    the noise share only for methods that label noise."""
    lines = []
    for key, (name, meaning) in METRICS.items():
        value = (metrics or {}).get(key)
        if value is None or (key == "noise_fraction" and not density_based):
            continue
        shown = f"{value:.1%}" if key == "noise_fraction" else _number(value)
        lines.append(f"{name} {shown}: {meaning}")
    return lines


def run_summary(config, results, timestamp=None):
    """A clustering run in a few readable lines.

    Args:
        config: the run's stored config (method, params, fields, ...)
        results: its stored results (clusters, metrics, edits, ...)
        timestamp (None): when it was computed, as a string with its time
            zone

    Returns:
        a list of strings: method and the parameters it used, clusters and
        sizes, the fields, each metric with what it means, edits since,
        and the time
    """
    method = config.get("method")
    try:
        density_based = METHODS.get(method).density_based
    except ValueError:
        density_based = False
    clusters = results.get("clusters") or {}
    n_clusters = sum(1 for cid in clusters if cid != NOISE_ID)
    noise = clusters.get(NOISE_ID, {}).get("size", 0)
    lines = [
        f"{method} ({_params(config.get('params') or {})}) on "
        f"'{config.get('embeddings_field')}', preprocessing: "
        + ("L2 normalised, " if config.get("normalize") else "")
        + f"reduce={config.get('reduce')}",
        f"{n_clusters} clusters of {results.get('n_samples', 0):,} samples"
        + (f" and {noise:,} noise" if density_based else "")
        + f"; {_sizes(clusters)}",
        f"cluster ids in '{config.get('cluster_field')}'"
        + _score_line(config),
    ]
    lines += metric_lines(results.get("metrics"), density_based)
    edits = results.get("edits") or []
    if edits:
        kinds = sorted({e.get("op") for e in edits})
        lines.append(
            f"{len(edits)} edits by hand since ({', '.join(kinds)}); the "
            "metrics predate them"
        )
    if timestamp:
        lines.append(f"computed {timestamp}")
    return lines


def _score_line(config):
    kind = config.get("score_kind")
    if kind not in SCORE_KINDS:
        return ""
    return (
        f", {kind} in '{config.get('score_field')}' (cluster mean: "
        f"{SCORE_KINDS[kind].cohesion})"
    )
