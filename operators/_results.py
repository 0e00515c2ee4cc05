"""What the operators show when they finish: the result of a run in a few
readable lines, from the dict the API returned (shown in the App's output
dialog by :func:`._execution.stream_api`, or by ``resolve_output``).

Text that comes from users or servers (field names, cluster labels, error
messages) is escaped, so it reads as it was written and never as Markdown
or HTML.
"""

import re

import fiftyone.operators.types as types

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~])")

# Per-cluster rows shown in a result at most
_MAX_ROWS = 20


def md(text):
    """``text`` escaped for Markdown: every character that Markdown or HTML
    would interpret is shown as it is."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def code(name):
    """A field or key name shown as code."""
    return f"`{str(name).replace('`', '')}`"


def seconds(value):
    """A duration in seconds, readable."""
    if value is None:
        return "?"
    value = float(value)
    if value < 60:
        return f"{value:.1f} s"
    return f"{int(value // 60)} min {round(value % 60):02d} s"


def _output(title, lines):
    """A result view: a title and lines of Markdown."""
    outputs = types.Object()
    outputs.md("\n\n".join(lines), name="report")
    return types.Property(outputs, view=types.View(label=title))


def action_output(
    title, out, headline=None, fields="Fields written", extra=()
):
    """The result of an action from the API's dict ``out``: a headline
    (the App shows no title above a streamed result), the summary lines,
    the fields and saved views written, ``extra`` Markdown and the time
    taken."""
    lines = [f"**{title}**: {headline}"] if headline else []
    lines += [f"- {md(line)}" for line in out.get("summary", [])]
    if out.get("fields"):
        names = ", ".join(code(f) for f in out["fields"])
        lines.append(f"**{fields}:** {names}")
    if out.get("saved_views"):
        names = ", ".join(code(v) for v in out["saved_views"])
        lines.append(
            f"**Saved view:** {names} (the view bar's saved views, or the "
            "cluster explorer)"
        )
    lines += list(extra)
    if out.get("elapsed_s") is not None:
        lines.append(f"**Time taken:** {seconds(out['elapsed_s'])}")
    return _output(title, lines)


def message_output(title, markdown):
    """A result view of one line of Markdown."""
    return _output(title, [markdown])


def _bullets(lines):
    return "\n".join(f"- {md(line)}" for line in lines)


def clusters_output(result, params):
    """The result of ``compute_clusters``: the run's summary (method and
    parameters used, clusters and sizes, noise where the method has noise,
    metrics in words), the fields written and the time taken."""
    r = result or {}
    fields = [f for f in (r.get("cluster_field"), r.get("score_field")) if f]
    lines = [
        f"**{r.get('n_clusters', '?')} clusters** of "
        f"{r.get('n_samples', 0):,} samples in run {code(r.get('run_key'))}",
        _bullets(r.get("summary") or []),
        "**Fields written:** " + ", ".join(code(f) for f in fields),
    ]
    embedded = r.get("embeddings") or {}
    if embedded.get("embedded"):
        lines.append(
            f"**Embeddings computed:** {embedded['embedded']:,} into "
            f"{code(embedded.get('embeddings_field'))}"
        )
    brain_key = (params or {}).get("projection_brain_key")
    if brain_key:
        lines.append(
            f"**Projection:** {code(brain_key)}: open the Embeddings panel, "
            f"choose {code(brain_key)} and colour by "
            f"{code(r.get('cluster_field'))}"
        )
    lines.append(
        f"**Time taken:** {seconds((r.get('timings') or {}).get('total_s'))}"
        ". Browse the clusters in the Cluster explorer panel (+ next to the "
        "Samples tab)"
    )
    return _output("Clusters computed", lines)


def run_info_output(result):
    """The info of a clustering run: its summary first, then the stored
    config and statistics, whose per-cluster details (sizes, labels,
    representative ids) come last."""
    r = result or {}
    outputs = types.Object()
    outputs.md(
        f"**Run {code(r.get('run_key'))}**\n\n"
        + _bullets(r.get("summary") or []),
        name="report",
    )
    outputs.str("timestamp", label="Computed (ISO 8601, with time zone)")
    outputs.str("plugin_version", label="Plugin version")
    outputs.str("fiftyone_version", label="FiftyOne version")
    outputs.obj("config", label="Config", view=types.JSONView())
    outputs.obj(
        "statistics",
        label="Statistics (per-cluster details and representative ids last)",
        view=types.JSONView(),
    )
    return types.Property(outputs, view=types.View(label="Run info"))


def projection_output(result):
    """The result of ``compute_projection``: what was projected, where the
    Embeddings panel lists it and which field to colour by."""
    r = result or {}
    key = r.get("brain_key")
    source = f"field {code(r.get('embeddings_field'))}"
    if r.get("run_key"):
        source = f"clustering run {code(r['run_key'])} ({source})"
    lines = [
        f"**{r.get('n_samples', 0):,} samples projected** to 2-D with "
        f"{md(r.get('method', '?'))} from {source}",
        f"**In the App:** open the Embeddings panel (+ next to the Samples "
        f"tab) and choose {code(key)}",
    ]
    if r.get("color_by"):
        lines.append(f"**Colour by:** {code(r['color_by'])}")
    else:
        lines.append(
            "**Colour by:** any field; project a clustering run to colour "
            "by its clusters"
        )
    timings = r.get("timings") or {}
    lines.append(f"**Time taken:** {seconds(timings.get('total_s'))}")
    return _output("Projection computed", lines)


def embeddings_output(result):
    """The result of ``compute_embeddings``: counts, the field, the
    failures and the speed."""
    r = result or {}
    lines = [
        f"**{r.get('embedded', 0):,} samples embedded** into "
        f"{code(r.get('embeddings_field'))} with {md(r.get('model', '?'))} "
        f"({r.get('dim') or '?'} dimensions, {md(r.get('precision') or '?')})"
        f"; {r.get('skipped', 0):,} skipped (they had a vector), "
        f"{r.get('failed', 0):,} failed (unreadable images)",
    ]
    failed = r.get("failed_files") or []
    if failed:
        shown = ", ".join(code(f) for f in failed[:_MAX_ROWS])
        more = len(failed) - _MAX_ROWS
        more = f" and {more:,} more" if more > 0 else ""
        lines.append(f"**Failed files:** {shown}{more}")
    if r.get("first_error"):
        lines.append(f"**First error:** {md(r['first_error'])}")
    lines.append(
        f"**Time taken:** {seconds(r.get('seconds'))} "
        f"({r.get('images_per_s') or 0:.1f} images/s)"
    )
    return _output("Embeddings computed", lines)


def shards_output(result):
    """The result of queueing a sharded ``compute_embeddings`` run."""
    r = result or {}
    lines = [md(line) for line in r.get("summary") or []]
    ops = r.get("operations") or []
    if ops:
        lines.append("**Operations:** " + ", ".join(code(o) for o in ops))
    return _output("Embedding shards queued", lines)


def labels_output(result):
    """The result of ``label_clusters``: the labels written, the clusters
    that failed and why, the tokens used and the time taken."""
    r = result or {}
    labelled = r.get("labelled") or {}
    failed = r.get("failed") or {}
    lines = [
        f"**{len(labelled)} clusters named** into "
        f"{code(r.get('label_field'))} by {md(r.get('model', '?'))}; "
        f"{len(failed)} failed, "
        f"{len(r.get('already_labelled') or [])} already had a label"
    ]
    if labelled:
        rows = ["| cluster | label | description |", "|---|---|---|"]
        for cid, item in list(labelled.items())[:_MAX_ROWS]:
            rows.append(
                f"| {md(cid)} | {md(item.get('label', ''))} | "
                f"{md(item.get('description', ''))} |"
            )
        lines.append("\n".join(rows))
    for cid, reason in list(failed.items())[:_MAX_ROWS]:
        lines.append(f"**Cluster {md(cid)} failed:** {md(reason)}")
    usage = r.get("usage") or {}
    lines.append(
        f"**Requests:** {r.get('requests', 0)}; tokens reported: "
        f"{usage.get('prompt_tokens', 0):,} in, "
        f"{usage.get('completion_tokens', 0):,} out. "
        f"**Time taken:** {seconds(r.get('elapsed_s'))}"
    )
    return _output("Clusters named", lines)
