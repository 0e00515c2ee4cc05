"""What the cluster explorer shows, built from plain data: the table's
columns and rows, the sizes plot's traces, the run's summary text, and the
panel's layout for its state (:func:`render_panel`). Nothing here reads the
database or the panel's context; the inputs call the panel's ``on_*``
methods."""

import fiftyone.operators.types as types

from ..core.methods import SCORE_KINDS
from ..core.metrics import NOISE_ID

# (key, label, first sort direction is descending)
COLUMNS = (
    ("id", "Cluster", False),
    ("label", "Label", False),
    ("size", "Size", True),
    ("in_view", "In view", True),
    ("score_mean", "Cohesion", None),  # direction depends on score kind
)
COLUMN_KEYS = tuple(c[0] for c in COLUMNS)

# What the panel keeps of a run's cluster table, besides its rows
SUMMARY_KEYS = (
    "method",
    "params",
    "embeddings_field",
    "cluster_field",
    "score_field",
    "score_kind",
    "label_field",
    "n_samples",
    "n_clusters",
    "metrics",
)

# The sizes plot: a height in px (a plain number would be a percentage of
# the panel)
_PLOT_HEIGHT = "280px"
_PLOT_LAYOUT = {
    "xaxis": {"type": "category", "title": {"text": "cluster"}},
    "yaxis": {"title": {"text": "samples"}},
    "bargap": 0.15,
    "height": 280,
    "margin": {"t": 8, "l": 48, "b": 40, "r": 8},
}
_PLOT_CONFIG = {"displayModeBar": False, "scrollZoom": False}

_BAR = "#ff6d04"
_BAR_SELECTED = "#2c7be5"
_BAR_NOISE = "#9e9e9e"


def run_summary(table):
    """What the panel's state keeps of a run's cluster table (see
    :func:`api.get_cluster_table`)."""
    summary = {k: table[k] for k in SUMMARY_KEYS}
    summary["n_edits"] = len(table["edits"])
    return summary


def first_direction(key, summary):
    """Whether a first click on a column sorts it descending."""
    for k, _, desc in COLUMNS:
        if k == key and desc is not None:
            return desc
    # Cohesion: most cohesive first
    kind = SCORE_KINDS.get((summary or {}).get("score_kind"))
    return kind is not None and kind.higher_is_typical


def sorted_rows(rows, key, desc):
    """Rows sorted by ``key``; missing values and the noise row last."""
    key = key if key in COLUMN_KEYS else "size"

    def value(r):
        v = r.get(key)
        if key == "id":
            return int(r["id"])
        if isinstance(v, str):
            return v.lower()
        return v

    clusters = [r for r in rows if r["id"] != NOISE_ID]
    present = [r for r in clusters if value(r) is not None]
    missing = [r for r in clusters if value(r) is None]
    noise = [r for r in rows if r["id"] == NOISE_ID]
    present.sort(key=lambda r: int(r["id"]))
    present.sort(key=value, reverse=bool(desc))
    missing.sort(key=lambda r: int(r["id"]))
    return present + missing + noise


def _fmt(value, digits=3):
    if value is None:
        return ""
    return f"{value:.{digits}f}"


def table_data(rows, selected):
    """The table's data: one row per cluster, the selected one marked."""
    out = []
    selected_rows = []
    for i, r in enumerate(rows):
        if r["id"] == selected:
            selected_rows.append(i)
        out.append(
            [
                "-1 (noise)" if r["id"] == NOISE_ID else r["id"],
                r.get("label") or "",
                r["size"],
                "" if r.get("in_view") is None else r["in_view"],
                _fmt(r.get("score_mean")),
            ]
        )
    return {
        "columns": list(COLUMN_KEYS),
        "rows": out,
        "selected_rows": selected_rows,
    }


def plot_data(rows, selected):
    """The sizes plot's traces: one bar per cluster, the selected one and
    noise in their own colours."""
    colors = [
        (
            _BAR_SELECTED
            if r["id"] == selected
            else _BAR_NOISE if r["id"] == NOISE_ID else _BAR
        )
        for r in rows
    ]
    hover = [
        f"cluster {r['id']}"
        + (f": {r['label']}" if r.get("label") else "")
        + f"<br>{r['size']} samples"
        for r in rows
    ]
    return [
        {
            "type": "bar",
            "name": "clusters",
            "x": ["noise" if r["id"] == NOISE_ID else r["id"] for r in rows],
            "y": [r["size"] for r in rows],
            "ids": [r["id"] for r in rows],
            "text": hover,
            "hoverinfo": "text",
            "textposition": "none",
            "marker": {"color": colors},
        }
    ]


def empty_data():
    """The panel's data when it shows no run."""
    return {
        "clusters_table": table_data([], None),
        "sizes_plot": [],
    }


def summary_markdown(run_key, summary):
    """The run's summary: method, parameters, sizes, quality metrics, what
    the cohesion column means, labels and edits."""
    params = summary.get("params") or {}
    param_text = (
        ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "defaults"
    )
    lines = [
        f"**{run_key}**: `{summary.get('method')}` ({param_text}) on "
        f"`{summary.get('embeddings_field')}`; "
        f"{summary.get('n_clusters')} clusters of "
        f"{summary.get('n_samples')} samples in "
        f"`{summary.get('cluster_field')}`",
    ]
    metrics = summary.get("metrics") or {}
    shown = [
        f"{k.replace('_', ' ')} {_fmt(v) if isinstance(v, float) else v}"
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    if shown:
        lines.append("Quality: " + ", ".join(shown))
    kind = SCORE_KINDS.get(summary.get("score_kind"))
    if kind is not None:
        lines.append(f"Cohesion: {kind.cohesion}")
    if summary.get("label_field"):
        lines.append(f"Labels in `{summary['label_field']}`")
    if summary.get("n_edits"):
        lines.append(
            f"{summary['n_edits']} manual edits since the run was computed "
            "(quality metrics predate them)"
        )
    return "\n\n".join(lines)


# ----------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------


def render_panel(state, events):
    """The panel's layout for its ``state``: ``events`` is the panel, whose
    ``on_*`` methods its inputs call."""
    panel = types.Object()
    run_keys = state.runs or []
    if run_keys:
        _render_run_choice(panel, state, run_keys, events)
    _render_tools(panel, state, events)
    if state.missing:
        panel.view("missing_notice", types.Warning(label=state.missing))
    if not run_keys:
        panel.md(
            "This dataset has no clustering runs yet: compute "
            "embeddings, then **Compute clusters**.",
            name="no_runs",
        )
        return _layout(panel)
    if not state.summary:
        return _layout(panel)
    _render_clusters(panel, state, events)
    if state.cluster is not None and state.cluster_info:
        _render_selected(panel, state, events)
    return _layout(panel)


def _render_run_choice(panel, state, run_keys, events):
    choices = types.DropdownView(label="Clustering run")
    for key in run_keys:
        choices.add_choice(key, label=key)
    panel.enum(
        "run_key",
        choices.values(),
        default=state.run_key,
        view=choices,
        on_change=events.on_change_run,
    )


def _render_tools(panel, state, events):
    """The row of buttons that open the plugin's operators."""
    tools = panel.h_stack("tools", align_x="left", gap=1)
    _button(tools, events, "compute_clusters", "Compute clusters", "add")
    _button(
        tools,
        events,
        "label_clusters",
        "Label clusters",
        "label",
        disabled=not state.run_key,
    )
    _button(
        tools,
        events,
        "compute_projection",
        "Compute projection",
        "scatter_plot",
    )
    _button(tools, events, "refresh", "Refresh", "refresh")


def _render_clusters(panel, state, events):
    """The run's summary, the sizes plot and the cluster table."""
    panel.md(
        summary_markdown(state.run_key, state.summary),
        name="summary_text",
    )
    panel.md(
        "Cluster sizes (click a bar to show its samples)",
        name="chart_title",
    )
    panel.plot(
        "sizes_plot",
        layout=_PLOT_LAYOUT,
        config=_PLOT_CONFIG,
        on_click=events.on_plot_click,
        height=_PLOT_HEIGHT,
    )
    table = types.TableView(
        on_click_cell=events.on_table_click,
        # the App's default minimum width overflows a narrow panel
        componentsProps={"table": {"sx": {"minWidth": 0}}},
    )
    for key, label, _ in COLUMNS:
        table.add_column(
            key,
            label=_column_label(key, label, state.sort_by, state.sort_desc),
        )
    panel.list(
        "clusters_table",
        types.Object(),
        view=table,
        label="Clusters (click a row to show it; a header to sort)",
    )


def _render_selected(panel, state, events):
    """The selected cluster: its title, and how to leave, rename, tag
    and merge it."""
    info = state.cluster_info
    cid = state.cluster
    panel.md(_selected_title(cid, info), name="selected_title")
    nav = panel.h_stack("selected_nav", align_x="left", gap=1)
    _button(nav, events, "show_all", "Show all samples", "close")
    if cid != NOISE_ID:
        panel.str(
            "label_input",
            label="Label",
            description="A name for this cluster",
            default=info.get("label") or "",
        )
        _button(panel, events, "rename", "Rename cluster", "edit", True)
    panel.str(
        "tag_input",
        label="Tag",
        description="Adds this tag to every sample of the cluster",
    )
    _button(panel, events, "tag", "Tag samples", "sell", True)
    _render_merge(panel, _merge_targets(state.order, cid), events)


def _render_merge(panel, targets, events):
    """The merge choice, when the cluster can merge into another."""
    if not targets:
        return
    choices = types.DropdownView(label="Merge into")
    for c in targets:
        choices.add_choice(c, label=f"cluster {c}")
    panel.enum(
        "merge_into",
        choices.values(),
        view=choices,
        description=("Moves every sample of this cluster into the chosen one"),
    )
    _button(panel, events, "merge", "Merge clusters", "merge", True)


def _button(container, events, name, label, icon, contained=False, **kwargs):
    """A button ``name`` that calls the panel's ``on_<name>``: filled
    (``contained``) for an edit, outlined otherwise."""
    container.btn(
        name,
        label=label,
        icon=icon,
        variant="contained" if contained else "outlined",
        on_click=getattr(events, f"on_{name}"),
        **kwargs,
    )


def _layout(panel):
    """The panel's inputs and views stacked from the top left."""
    return types.Property(
        panel,
        view=types.GridView(
            orientation="vertical",
            align_x="left",
            align_y="top",
            gap=2,
        ),
    )


def _column_label(key, label, sort_by, sort_desc):
    """A column's header, with an arrow on the sorted one."""
    if key == sort_by:
        label += " ▼" if sort_desc else " ▲"
    return label


def _selected_title(cid, info):
    """The heading of the selected cluster."""
    title = "Noise (cluster -1)" if cid == NOISE_ID else f"Cluster {cid}"
    if info.get("label"):
        title += f" · {info['label']}"
    return f"**{title}**: {info.get('size', 0)} samples"


def _merge_targets(order, cid):
    """The clusters that cluster ``cid`` can merge into: none for noise."""
    if cid == NOISE_ID:
        return []
    return [c for c in order or [] if c not in (cid, NOISE_ID)]
