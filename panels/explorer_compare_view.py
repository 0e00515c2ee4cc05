"""What the cluster explorer shows of keeping a run up with its dataset:
the tools (assign new samples, show only dissolving clusters, compare
with another run) and a comparison of two runs: ARI and AMI, a Sankey
picture of the samples that flow between their clusters, the verdict per
cluster and the largest flows, as tables whose rows show samples in the
grid.

Like the cluster table, a comparison is kept whole in the panel's state
under :data:`COMPARE_KEYS`, each part stamped with both runs, so that a
click is resolved against what the App displayed. Nothing here reads the
database or the panel's context."""

import fiftyone.operators.types as types

from ..core.compare import DISSOLVING
from .explorer_view import md_text, plot_text

# State keys: the comparison's summary, its two tables and the picture
COMPARISON = "comparison"
VERDICTS, FLOWS, SANKEY = "compare_verdicts", "compare_flows", "compare_sankey"
COMPARE_KEYS = (COMPARISON, VERDICTS, FLOWS, SANKEY)

VERDICT_COLUMNS = (
    ("run", "Run"),
    ("id", "Cluster"),
    ("size", "Size"),
    ("verdict", "Verdict"),
    ("best_match", "Best match"),
    ("jaccard", "Jaccard"),
    ("moved", "Moved"),
)
FLOW_COLUMNS = (
    ("a", "From"),
    ("b", "To"),
    ("count", "Samples"),
    ("kind", "Flow"),
)
# The largest flows the picture and the flow table show
MAX_LINKS = 150
MAX_FLOW_ROWS = 30

_STAYED = "rgba(158, 158, 158, 0.45)"
_MOVED = "rgba(255, 109, 4, 0.6)"
_SANKEY_HEIGHT = 420


def _stamp(run_key, other_run_key, **content):
    return dict(content, run_key=run_key, other_run_key=other_run_key)


def comparison_content(out):
    """The state keys of a comparison (:func:`api.compare_clustering_runs`
    output): its summary, the verdict and flow tables and the picture."""
    a, b = out["run_key"], out["other_run_key"]
    best = {(c["run"], c["id"]): c["best_match"] for c in out["clusters"]}
    moved = _moved_counts(out, best)
    verdict_rows = [
        [
            a if c["run"] == "a" else b,
            c["id"],
            c["size"],
            c["verdict"],
            c["best_match"],
            f"{c['jaccard']:.2f}",
            moved.get((c["run"], c["id"]), 0),
            c["run"],
        ]
        for c in out["clusters"]
    ]
    flows = out["flows"]
    flow_rows = [
        [f["a"], f["b"], f["count"], _flow_kind(f, best)]
        for f in flows[:MAX_FLOW_ROWS]
    ]
    counts = {}
    for e in out["events"]:
        counts[e["verdict"]] = counts.get(e["verdict"], 0) + 1
    summary = dict(
        ari=out["ari"],
        ami=out["ami"],
        n_samples=out["n_samples"],
        verdicts=counts,
        n_flows=len(flows),
    )
    return {
        COMPARISON: _stamp(a, b, **summary),
        VERDICTS: _stamp(
            a,
            b,
            columns=[k for k, _ in VERDICT_COLUMNS] + ["side"],
            rows=verdict_rows,
        ),
        FLOWS: _stamp(
            a, b, columns=[k for k, _ in FLOW_COLUMNS], rows=flow_rows
        ),
        SANKEY: sankey_data(a, b, flows[:MAX_LINKS], best),
    }


def empty_comparison():
    return {key: None for key in COMPARE_KEYS}


def _flow_kind(flow, best):
    """``stayed`` for a flow between a cluster and its best match,
    ``moved`` otherwise."""
    stayed = best.get(("a", flow["a"])) == flow["b"]
    return "stayed" if stayed else "moved"


def _moved_counts(out, best):
    """Per cluster of either run, its samples not in its best match (but
    clustered in the other run)."""
    moved = {}
    for f in out["flows"]:
        if best.get(("a", f["a"])) != f["b"]:
            key = ("a", f["a"])
            moved[key] = moved.get(key, 0) + f["count"]
        if best.get(("b", f["b"])) != f["a"]:
            key = ("b", f["b"])
            moved[key] = moved.get(key, 0) + f["count"]
    return moved


def sankey_data(run_key, other_run_key, flows, best):
    """A Plotly Sankey trace of ``flows``: a node per cluster of each run
    (``<run> · <id>``), a link per flow, grey where a cluster stays with
    its best match, orange where samples move; each link carries its two
    cluster ids (``customdata``), the trace both runs (``meta``)."""
    if not flows:
        return []
    left = sorted({f["a"] for f in flows}, key=_id_order)
    right = sorted({f["b"] for f in flows}, key=_id_order)
    where_a = {c: i for i, c in enumerate(left)}
    where_b = {c: len(left) + i for i, c in enumerate(right)}
    labels = [plot_text(f"{run_key} · {c}") for c in left]
    labels += [plot_text(f"{other_run_key} · {c}") for c in right]
    kinds = [_flow_kind(f, best) for f in flows]
    return [
        {
            "type": "sankey",
            "name": "flows",
            "arrangement": "fixed",
            "meta": {"run_key": run_key, "other_run_key": other_run_key},
            "node": {"label": labels, "pad": 6, "thickness": 14},
            "link": {
                "source": [where_a[f["a"]] for f in flows],
                "target": [where_b[f["b"]] for f in flows],
                "value": [f["count"] for f in flows],
                "customdata": [[f["a"], f["b"]] for f in flows],
                "color": [_MOVED if k == "moved" else _STAYED for k in kinds],
                "hovertemplate": "%{value} samples<extra></extra>",
            },
        }
    ]


def _id_order(cid):
    try:
        return (0, int(cid))
    except ValueError:
        return (1, cid)


def content_rows(content):
    """The rows of a table's content as dicts."""
    if not isinstance(content, dict):
        return []
    columns = content.get("columns") or []
    return [dict(zip(columns, r)) for r in content.get("rows") or []]


def stamped_row(content, row, run_key, other_run_key):
    """Row ``row`` of a comparison table as the App showed it, or ``None``
    when it shows other runs or has no such row."""
    if not isinstance(content, dict) or (
        content.get("run_key"),
        content.get("other_run_key"),
    ) != (run_key, other_run_key):
        return None
    rows = content_rows(content)
    return rows[row] if 0 <= row < len(rows) else None


def comparison_markdown(summary):
    """The comparison's headline: the runs, ARI, AMI and verdicts."""
    verdicts = ", ".join(
        f"{k} {v}" for k, v in sorted(summary["verdicts"].items())
    )
    return (
        f"**{md_text(summary['run_key'])}** vs "
        f"**{md_text(summary['other_run_key'])}** on "
        f"{summary['n_samples']:,} shared samples: ARI "
        f"**{summary['ari']:.3f}**, AMI **{summary['ami']:.3f}** (1: the "
        "same clustering, 0: no more alike than chance)\n\n"
        f"Verdicts: {md_text(verdicts) or 'none'}. Orange flows are samples "
        "that left a cluster's best match: click a flow, a verdict row or "
        "a flow row to show its samples in the grid."
    )


# ----------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------


def render_keeping_tools(panel, state, events):
    """Assign new samples, the dissolving filter (when the run measured
    stability) and the run to compare with."""
    if not state.run_key:
        return
    summary = state.summary or {}
    tools = panel.h_stack(
        "compare_tools", align_x="left", align_y="center", gap=1
    )
    tools.btn(
        "assign_clusters",
        label="Assign new samples",
        icon="input",
        variant="outlined",
        on_click=events.on_assign_clusters,
    )
    if summary.get("stability"):
        only = bool(state.only_dissolving)
        n = summary.get("n_dissolving", 0)
        tools.btn(
            "toggle_dissolving",
            label=(
                "Show all clusters"
                if only
                else f"Show only dissolving clusters ({n}, < {DISSOLVING})"
            ),
            icon="filter_alt",
            variant="contained" if only else "outlined",
            on_click=events.on_toggle_dissolving,
        )
    others = [k for k in state.runs or [] if k != state.run_key]
    if others:
        choices = types.DropdownView(label="Compare with run")
        for key in others:
            choices.add_choice(key, label=key)
        tools.enum(
            "other",
            choices.values(),
            view=choices,
            on_change=events.on_compare,
        )


def render_comparison(panel, state, events):
    """The comparison of the shown run with another, when there is one."""
    summary = state.get(COMPARISON)
    if not summary or summary.get("run_key") != state.run_key:
        return
    panel.md(comparison_markdown(summary), name="compare_text")
    panel.plot(
        SANKEY,
        layout={
            "height": _SANKEY_HEIGHT,
            "margin": {"t": 8, "l": 8, "b": 8, "r": 8},
        },
        config={"displayModeBar": False},
        on_click=events.on_flow_click,
        height=f"{_SANKEY_HEIGHT}px",
    )
    if state.compare_shown:
        panel.md(md_text(state.compare_shown), name="compare_shown")
    _table(
        panel,
        VERDICTS,
        VERDICT_COLUMNS,
        events.on_verdict_click,
        "Verdicts (click a row: its samples that moved)",
    )
    _table(
        panel,
        FLOWS,
        FLOW_COLUMNS,
        events.on_flow_row_click,
        "Largest flows (click a row: its samples)",
    )
    panel.btn(
        "close_compare",
        label="Close the comparison",
        icon="close",
        variant="outlined",
        on_click=events.on_close_compare,
    )


def _table(panel, key, columns, on_click, label):
    table = types.TableView(
        on_click_cell=on_click,
        componentsProps={"table": {"sx": {"minWidth": 0}}},
    )
    for col, text in columns:
        table.add_column(col, label=text)
    panel.list(key, types.Object(), view=table, label=label)


def moved_text(what, count):
    """What the grid shows after a click in the comparison."""
    noun = "sample" if count == 1 else "samples"
    return f"The grid shows {count:,} {noun}: {what}"
