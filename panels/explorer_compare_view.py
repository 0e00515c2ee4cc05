"""What the cluster explorer shows of keeping a run up with its dataset:
the tools (assign new samples, show only dissolving clusters, compare
with another run) and a comparison of two runs: ARI and AMI, a map of
the samples that flow between their clusters (a heatmap: a row per
cluster of one run, a column per cluster of the other), the verdict per
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
VERDICTS, FLOWS = "compare_verdicts", "compare_flows"
FLOW_MAP = "compare_flow_map"
COMPARE_KEYS = (COMPARISON, VERDICTS, FLOWS, FLOW_MAP)

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
# The clusters per axis of the picture, the rows of the flow table
MAX_SIDE = 30
MAX_FLOW_ROWS = 30

# Light to strong, by the share of the row's samples in the cell
_SCALES = {
    "stayed": [[0, "rgb(95, 95, 95)"], [1, "rgb(210, 210, 210)"]],
    "moved": [[0, "rgb(150, 65, 10)"], [1, "rgb(255, 109, 4)"]],
}
_MAP_HEIGHT = 520


def _stamp(run_key, other_run_key, **content):
    return dict(content, run_key=run_key, other_run_key=other_run_key)


def comparison_content(out):
    """The state keys of a comparison (:func:`api.compare_clustering_runs`
    output): its summary, the verdict and flow tables and the picture."""
    a, b = out["run_key"], out["other_run_key"]
    best = {(c["run"], c["id"]): c["best_match"] for c in out["clusters"]}
    sizes = {c["id"]: c["size"] for c in out["clusters"] if c["run"] == "a"}
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
        FLOW_MAP: flow_map_data(a, b, flows, best, sizes),
    }


def empty_comparison():
    return {key: None for key in COMPARE_KEYS}


def _flow_kind(flow, best):
    """``stayed`` for a flow between two clusters that are each other's
    best match, ``moved`` otherwise (the smaller part of a split, or the
    part of a merge that joined another cluster's best match)."""
    stayed = best.get(("a", flow["a"])) == flow["b"] and (
        best.get(("b", flow["b"])) == flow["a"]
    )
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


def flow_map_data(run_key, other_run_key, flows, best, sizes=None):
    """A Plotly heatmap of ``flows``: a row per cluster of the run, a
    column per cluster of the other run, each cell the share of the row's
    samples that are in the column's cluster. Columns follow their rows'
    best matches, so the samples that stay lie on the diagonal (grey:
    clusters that are each other's best match) and those that moved are
    orange; cells without samples stay empty.
    At most :data:`MAX_SIDE` clusters per axis: the run's largest, and
    the other run's clusters that receive the most of their samples; the
    counts are written in the cells when they fit. A click on a cell
    sends its two cluster ids as ``y`` and ``x`` and the trace's name,
    which names both runs (as does ``meta``)."""
    if not flows:
        return []
    totals = {}
    for f in flows:
        totals[f["a"]] = totals.get(f["a"], 0) + f["count"]
    # the whole cluster where known: ``flows`` may hold only the largest
    totals.update(sizes or {})
    rows = _largest({f["a"] for f in flows}, flows, "a")
    # the columns that the rows shown send the most samples to
    kept = set(rows)
    seen = [f for f in flows if f["a"] in kept]
    cols = _columns(rows, _largest({f["b"] for f in seen}, seen, "b"), best)
    where_r = {c: i for i, c in enumerate(rows)}
    where_c = {c: j for j, c in enumerate(cols)}
    kinds = ("stayed", "moved")
    shares = {k: _grid(len(rows), len(cols), None) for k in kinds}
    counts = {k: _grid(len(rows), len(cols), "") for k in kinds}
    for f in flows:
        i, j = where_r.get(f["a"]), where_c.get(f["b"])
        if i is None or j is None:
            continue
        kind = _flow_kind(f, best)
        shares[kind][i][j] = round(f["count"] / totals[f["a"]], 4)
        counts[kind][i][j] = f["count"]
    meta = {"run_key": run_key, "other_run_key": other_run_key}
    return [
        {
            "type": "heatmap",
            "name": f"{kind}: {run_key} → {other_run_key}",
            "meta": meta,
            "x": cols,
            "y": rows,
            "z": shares[kind],
            "text": counts[kind],
            "texttemplate": "%{text}" if len(rows) * len(cols) <= 400 else "",
            "zmin": 0,
            "zmax": 1,
            "colorscale": _SCALES[kind],
            "showscale": False,
            "xgap": 1,
            "ygap": 1,
            "hovertemplate": (
                f"{plot_text(run_key)} · %{{y}} → "
                f"{plot_text(other_run_key)} · %{{x}}: %{{text}} samples "
                "(%{z:.0%})<extra>" + kind + "</extra>"
            ),
        }
        for kind in kinds
    ]


def flow_map_layout(traces):
    """The heatmap's layout: categorical axes named after the runs, the
    first cluster of the run on top."""
    if not traces:
        return {}
    meta = traces[0]["meta"]
    n_rows = len(traces[0]["y"])
    axis = {
        "type": "category",
        "showgrid": False,
        "zeroline": False,
        "fixedrange": True,  # a drag must not zoom a map made to click
    }
    return {
        "height": _map_height(n_rows),
        "margin": {"t": 8, "l": 64, "b": 48, "r": 8},
        "xaxis": dict(axis, title={"text": plot_text(meta["other_run_key"])}),
        "yaxis": dict(
            axis,
            autorange="reversed",
            title={"text": plot_text(meta["run_key"])},
        ),
    }


def _map_height(n_rows):
    return max(220, min(_MAP_HEIGHT, 60 + 26 * n_rows))


def _grid(n_rows, n_cols, empty):
    return [[empty] * n_cols for _ in range(n_rows)]


def _largest(ids, flows, side):
    """At most :data:`MAX_SIDE` of ``ids``, those with the most samples
    in ``flows``, in id order."""
    size = {}
    for f in flows:
        size[f[side]] = size.get(f[side], 0) + f["count"]
    top = sorted(ids, key=lambda c: (-size[c], _id_order(c)))[:MAX_SIDE]
    return sorted(top, key=_id_order)


def _columns(rows, cols, best):
    """``cols`` ordered by the rows whose best match they are, then the
    others in id order."""
    shown = set(cols)
    ordered = []
    for r in rows:
        m = best.get(("a", r))
        if m in shown and m not in ordered:
            ordered.append(m)
    return ordered + [c for c in cols if c not in ordered]


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
        f"Verdicts: {md_text(verdicts) or 'none'}.\n\nIn the map, a row "
        f"is a cluster of **{md_text(summary['run_key'])}**, a column one "
        f"of **{md_text(summary['other_run_key'])}**, a cell the samples "
        "they share. Grey: the two clusters are each other's best match; "
        "orange: samples that moved. Click a cell, a verdict row or a flow "
        "row to show its samples in the grid."
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
    layout = flow_map_layout(state.get(FLOW_MAP))
    panel.plot(
        FLOW_MAP,
        layout=layout,
        config={"displayModeBar": False, "scrollZoom": False},
        on_click=events.on_flow_click,
        height=f"{layout.get('height', _MAP_HEIGHT)}px",
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
