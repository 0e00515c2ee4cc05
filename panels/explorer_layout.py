"""The cluster explorer's layout for its state (:func:`render_panel`):
the run choice and tools, the run's summary, the sizes plot, and the
cluster table split at the selected cluster, whose actions (show all,
rename, tag, merge) sit right below its row. Nothing here reads the
database or the panel's context; the inputs call the panel's ``on_*``
methods."""

import fiftyone.operators.types as types

from ..core.metrics import NOISE_ID
from .explorer_compare_view import render_comparison, render_keeping_tools
from .explorer_keep_view import (
    render_cluster_duplicates,
    render_keep_histogram,
    render_keep_tools,
)
from .explorer_view import (
    COLUMN_LABELS,
    HEAD,
    PLOT,
    TAIL,
    cluster_name,
    edit_key,
    merge_question,
    merge_targets,
    plot_layout,
    selected_markdown,
    shown_columns,
    shown_rows,
    summary_markdown,
    table_rows,
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


def _table_sx(n_columns):
    """Both parts of the table lay their columns out alike (fixed, equal
    widths), so they read as one table around the selected cluster's
    actions."""
    width = f"{100 / max(n_columns, 1):.1f}%"
    return {
        "minWidth": 0,  # the App's default minimum overflows a narrow panel
        "tableLayout": "fixed",
        "& th, & td": {"width": width},
    }


def render_panel(state, events):
    """The panel's layout for its ``state``: ``events`` is the panel, whose
    ``on_*`` methods its inputs call."""
    panel = types.Object()
    run_keys = state.runs or []
    if run_keys:
        _render_run_choice(panel, state, run_keys, events)
    _render_tools(panel, state, events)
    _render_flag_tools(panel, state, events)
    render_keeping_tools(panel, state, events)
    render_keep_tools(panel, state, events)
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
    _render_overview(panel, state, events)
    _render_table(panel, HEAD, state, events)
    if state.cluster is not None and state.cluster_info:
        _render_selected(panel, state, events)
    if table_rows(state.get(TAIL)):
        _render_table(panel, TAIL, state, events)
    render_comparison(panel, state, events)
    render_keep_histogram(panel, state)
    return _layout(panel)


def _render_run_choice(panel, state, run_keys, events):
    """The run dropdown. It shows ``state.run_key`` and has no default: the
    App sends ``on_change`` with an input's default whenever the default
    differs from the input's value, and a default written from the state
    at each render (a run the panel switches to, a stale answer) makes the
    App switch runs back and forth by itself."""
    choices = types.DropdownView(label="Clustering run")
    for key in run_keys:
        choices.add_choice(key, label=key)
    panel.enum(
        "run_key",
        choices.values(),
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


def _render_overview(panel, state, events):
    """The run's summary and the sizes plot."""
    panel.md(
        summary_markdown(state.run_key, state.summary),
        name="summary_text",
    )
    panel.md(
        "Cluster sizes (click a bar to show its samples)",
        name="chart_title",
    )
    panel.plot(
        PLOT,
        layout=plot_layout(_PLOT_LAYOUT, state.get(PLOT)),
        config=_PLOT_CONFIG,
        on_click=events.on_plot_click,
        height=_PLOT_HEIGHT,
    )


def _render_table(panel, key, state, events):
    """One part of the cluster table: the first has the headers (click to
    sort), the part after the selected cluster has none."""
    columns = shown_columns(state)
    props = {"table": {"sx": _table_sx(len(columns))}}
    if key == TAIL:
        props["tableHead"] = {"sx": {"display": "none"}}
    table = types.TableView(
        on_click_cell=events.on_table_click, componentsProps=props
    )
    for col in columns:
        label = COLUMN_LABELS.get(col, col)
        table.add_column(
            col,
            label=_column_label(col, label, state.sort_by, state.sort_desc),
        )
    label = None
    if key == HEAD:
        label = "Clusters (click a row to show it; a header to sort)"
    panel.list(key, types.Object(), view=table, label=label)


def _render_selected(panel, state, events):
    """The selected cluster, right below its row: its title, and how to
    leave, rename, tag and merge it. Its inputs live under a state key of
    their own (:func:`edit_key`), and its buttons carry its id."""
    info = state.cluster_info
    cid = state.cluster
    ids = {"cluster": cid}
    panel.md(selected_markdown(cid, info), name="selected_title")
    box = panel.v_stack(edit_key(cid), align_x="left", gap=1)
    _button(box, events, "show_all", "Show all samples", "close")
    if cid != NOISE_ID:
        row = box.h_stack("rename", align_x="left", align_y="center", gap=1)
        row.str(
            "label",
            label="Label",
            description="A name for this cluster",
        )
        _button(row, events, "rename", "Rename", "edit", True, params=ids)
    row = box.h_stack("tag", align_x="left", align_y="center", gap=1)
    row.str(
        "text",
        label="Tag",
        description="Adds this tag to every sample of the cluster",
    )
    _button(row, events, "tag", "Tag samples", "sell", True, params=ids)
    _render_cluster_flags(box, info, cid, events)
    render_cluster_duplicates(box, info, cid, state, events)
    _render_merge(box, state, cid, events)


def _render_merge(box, state, cid, events):
    """The merge choice (each cluster with its label and size) and, once
    asked, the question that confirms it."""
    targets = merge_targets(state, cid)
    if not targets:
        return
    row = box.h_stack("merge", align_x="left", align_y="center", gap=1)
    choices = types.DropdownView(label="Merge into")
    for r in targets:
        c = r["cluster_id"]
        text = f"{cluster_name(c, r.get('label'))} ({r['size']} samples)"
        choices.add_choice(c, label=text)
    row.enum(
        "into",
        choices.values(),
        view=choices,
        description="Moves every sample of this cluster into the chosen one",
    )
    ids = {"cluster": cid}
    _button(row, events, "merge", "Merge…", "merge", True, params=ids)
    asked = state.confirm_merge or {}
    if asked.get("cluster") != cid:
        return
    rows = {r["cluster_id"]: r for r in shown_rows(state)}
    source, target = rows.get(cid), rows.get(asked.get("into"))
    if source is None or target is None:
        return
    source, target = dict(source, id=cid), dict(target, id=asked["into"])
    box.md(merge_question(source, target), name="merge_question")
    confirm = box.h_stack("confirm", align_x="left", gap=1)
    params = {"cluster": cid, "into": asked["into"]}
    confirm.btn(
        "confirm_merge",
        label=f"Merge cluster {cid} into {asked['into']}",
        icon="merge",
        variant="contained",
        on_click=events.on_confirm_merge,
        params=params,
    )
    _button(confirm, events, "cancel_merge", "Cancel", "close", params=ids)


def _render_flag_tools(panel, state, events):
    """The curation actions of the run, and, once they have run, buttons
    that show what they flagged in the whole run; while the grid shows
    flagged samples, a tag for them."""
    if not state.run_key:
        return
    flags = (state.summary or {}).get("flags") or {}
    tools = panel.h_stack("flag_tools", align_x="left", gap=1)
    _button(tools, events, "audit_labels", "Audit labels", "fact_check")
    _button(tools, events, "compute_outliers", "Outliers", "scatter_plot")
    for kind, n in flags.items():
        tools.btn(
            f"show_all_{kind}",
            label=f"Show {n:,} {kind}",
            icon="visibility",
            variant="outlined",
            on_click=events.on_show_flagged,
            params={"kind": kind},
        )
    if state.flagged:
        # A row of its own: next to the buttons, the input was squeezed to
        # a few characters and the button pushed past the panel's edge
        row = panel.h_stack(
            "flag_tag", align_x="left", align_y="center", gap=1
        )
        row.str(
            "tag",
            label="Tag",
            description="Adds this tag to every sample the grid shows",
        )
        _button(row, events, "tag_flagged", "Tag shown", "sell", True)


def _render_cluster_flags(box, info, cid, events):
    """Buttons that show the selected cluster's suspects or outliers."""
    kinds = [k for k in ("suspects", "outliers", "assigned") if info.get(k)]
    if not kinds:
        return
    row = box.h_stack("flags", align_x="left", gap=1)
    for kind in kinds:
        row.btn(
            f"show_{kind}",
            label=f"Show its {info[kind]} {kind}",
            icon="visibility",
            variant="outlined",
            on_click=events.on_show_flagged,
            params={"kind": kind, "cluster": cid},
        )


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
