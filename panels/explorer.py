"""The cluster explorer panel: browse the clusters of a clustering run, show
a cluster's samples in the grid, and name, tag and merge clusters.

The panel keeps in ``ctx.panel.state`` only what is small and serialisable
(the run and cluster chosen, the sort order, the run's summary, the cluster
ids in display order and the values typed into the panel's inputs); the
table rows and the plot traces go through ``ctx.panel.data``. Every change
goes through the plugin's API.
"""

import logging
import threading

import fiftyone.operators as foo
import fiftyone.operators.types as types

from .. import api
from ..data import InputError

logger = logging.getLogger(__name__)

PLUGIN = "@curate/clustering"
NOISE = "-1"

# (key, label, first sort direction is descending)
COLUMNS = (
    ("id", "Cluster", False),
    ("label", "Label", False),
    ("size", "Size", True),
    ("in_view", "In view", True),
    ("score_mean", "Cohesion", None),  # direction depends on score kind
)
COLUMN_KEYS = tuple(c[0] for c in COLUMNS)

_BAR = "#ff6d04"
_BAR_SELECTED = "#2c7be5"
_BAR_NOISE = "#9e9e9e"

# Run results live in GridFS, and reading them while another thread of the
# process rewrites them (a rename or a merge) fails. The App sends panel
# events while others still run (a rename adds a field, the App notices and
# sends a view change), so the panel's events run one at a time in a
# process.
_EVENTS_LOCK = threading.RLock()

_HELP = """
Browse the clusters of a clustering run. Click a bar or a row to show that
cluster's samples in the grid, most typical first; click a column header to
sort. Name, tag and merge the selected cluster below the table.
"""


def _operator(name):
    return f"{PLUGIN}/{name}"


class ClusterExplorer(foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(
            name="cluster_explorer",
            label="Cluster explorer",
            icon="bubble_chart",
            help_markdown=_HELP,
            surfaces="grid",
        )

    def execute(self, ctx):
        with _EVENTS_LOCK:
            return super().execute(ctx)

    # ------------------------------------------------------------------
    # Events
    # ------------------------------------------------------------------

    def on_load(self, ctx):
        self._refresh(ctx)

    def on_change_dataset(self, ctx):
        ctx.panel.state.set(
            {"run_key": None, "cluster": None, "cluster_info": None}
        )
        self._refresh(ctx)

    def on_change_view(self, ctx):
        cid = ctx.panel.state.cluster
        if cid is not None and not self._shows_cluster(ctx, cid):
            # The grid moved away from the selected cluster
            self._set_cluster(ctx, None)
        self._refresh(ctx)

    def on_refresh(self, ctx):
        self._refresh(ctx)

    def on_change_run(self, ctx):
        run_key = ctx.params.get("value") or ctx.panel.state.run_key
        ctx.panel.state.run_key = run_key
        self._set_cluster(ctx, None)
        self._refresh(ctx)

    def on_table_click(self, ctx):
        row = ctx.params.get("row")
        column = ctx.params.get("column")
        if row is None:
            return
        if int(row) < 0:
            if column is not None and 0 <= int(column) < len(COLUMNS):
                self._sort(ctx, COLUMN_KEYS[int(column)])
            return
        order = ctx.panel.state.order or []
        if int(row) < len(order):
            self._select(ctx, order[int(row)])

    def on_plot_click(self, ctx):
        cid = ctx.params.get("id")
        if cid is None:
            idx = ctx.params.get("idx")
            order = ctx.panel.state.order or []
            if idx is not None and 0 <= int(idx) < len(order):
                cid = order[int(idx)]
        if cid is not None:
            self._select(ctx, str(cid))

    def on_show_all(self, ctx):
        ctx.ops.clear_view()
        self._set_cluster(ctx, None)
        self._refresh(ctx, view=ctx.dataset.view())

    def on_rename(self, ctx):
        state = ctx.panel.state
        cid = state.cluster
        if cid is None:
            return
        try:
            out = api.rename_cluster(
                ctx.dataset, state.run_key, cid, state.label_input
            )
        except InputError as e:
            self._error(ctx, e)
            self._refresh(ctx)  # the run or cluster may have gone
            return
        ctx.ops.notify(
            f"Cluster {cid} is now '{out['label']}'", variant="success"
        )
        ctx.ops.reload_samples()
        self._refresh(ctx)

    def on_tag(self, ctx):
        state = ctx.panel.state
        cid = state.cluster
        if cid is None:
            return
        try:
            out = api.tag_cluster(
                ctx.dataset, state.run_key, cid, state.tag_input
            )
        except InputError as e:
            self._error(ctx, e)
            self._refresh(ctx)  # the run or cluster may have gone
            return
        ctx.ops.notify(
            f"Tagged {out['n_samples']} samples of cluster {cid} "
            f"'{out['tag']}'",
            variant="success",
        )
        ctx.ops.reload_samples()

    def on_merge(self, ctx):
        state = ctx.panel.state
        cid, into = state.cluster, state.merge_into
        if cid is None:
            return
        if not into:
            self._error(ctx, "Choose the cluster to merge into")
            return
        try:
            out = api.merge_clusters(
                ctx.dataset, state.run_key, [cid, into], into=into
            )
        except InputError as e:
            self._error(ctx, e)
            self._refresh(ctx)  # the run or cluster may have gone
            return
        ctx.ops.notify(
            f"Merged cluster {cid} into {out['into']} "
            f"({out['size']} samples)",
            variant="success",
        )
        state.merge_into = None
        self._select(ctx, out["into"])

    def on_compute_clusters(self, ctx):
        params = {}
        summary = ctx.panel.state.summary or {}
        if summary.get("embeddings_field"):
            params["embeddings_field"] = summary["embeddings_field"]
        ctx.prompt(
            _operator("compute_clusters"),
            params=params,
            on_success=self.on_operator_done,
        )

    def on_label_clusters(self, ctx):
        run_key = ctx.panel.state.run_key
        ctx.prompt(
            _operator("label_clusters"),
            params={"run_key": run_key} if run_key else {},
            on_success=self.on_operator_done,
        )

    def on_compute_projection(self, ctx):
        # A projection of the run's samples records the run, so the
        # Embeddings panel can colour by its clusters
        run_key = ctx.panel.state.run_key
        params = {"source": "run", "run_key": run_key} if run_key else {}
        ctx.prompt(
            _operator("compute_projection"),
            params=params,
            on_success=self.on_operator_done,
        )

    def on_operator_done(self, ctx):
        result = ctx.params.get("result") or {}
        original = ctx.params.get("original_params") or {}
        run_key = None
        if isinstance(result, dict):
            run_key = result.get("run_key")
        if run_key is None and isinstance(original, dict):
            run_key = original.get("run_key")
        if run_key and run_key in api.list_clustering_runs(ctx.dataset):
            if run_key != ctx.panel.state.run_key:
                ctx.panel.state.run_key = run_key
                self._set_cluster(ctx, None)
        self._refresh(ctx)
        ctx.ops.reload_samples()

    # ------------------------------------------------------------------
    # Helpers (state and data only; the work is done by the API)
    # ------------------------------------------------------------------

    def _error(self, ctx, error):
        logger.info("Cluster explorer: %s", error)
        ctx.ops.notify(str(error), variant="error")

    def _set_cluster(self, ctx, cid, info=None):
        ctx.panel.state.set(
            {
                "cluster": cid,
                "cluster_info": info,
                "label_input": (info or {}).get("label") or "",
                "merge_into": None,
            }
        )

    def _shows_cluster(self, ctx, cid):
        """Whether the App's view starts with the view of cluster ``cid``
        (sidebar filters may follow)."""
        try:
            expected = api.cluster_view(
                ctx.dataset, ctx.panel.state.run_key, cid
            )._serialize(include_uuids=False)
        except InputError:
            return False
        current = ctx.view._serialize(include_uuids=False)
        return current[: len(expected)] == expected

    def _select(self, ctx, cid):
        run_key = ctx.panel.state.run_key
        try:
            view = api.cluster_view(ctx.dataset, run_key, cid)
        except InputError as e:
            self._error(ctx, e)
            self._refresh(ctx)
            return
        ctx.ops.set_view(view)
        self._set_cluster(ctx, cid)
        self._refresh(ctx, view=view)
        info = ctx.panel.state.cluster_info or {}
        ctx.panel.state.label_input = info.get("label") or ""

    def _sort(self, ctx, key):
        state = ctx.panel.state
        if state.sort_by == key:
            state.sort_desc = not state.sort_desc
        else:
            state.sort_desc = _first_direction(key, state.summary)
            state.sort_by = key
        self._refresh(ctx)

    def _refresh(self, ctx, view=None):
        """Reloads the run list, the chosen run's summary and the cluster
        table from the database into the panel's state and data."""
        state = ctx.panel.state
        if ctx.dataset is None:
            state.set({"runs": [], "run_key": None, "summary": None})
            self._clear_data(ctx)
            return
        runs = api.list_clustering_runs(ctx.dataset)
        run_key = state.run_key
        updates = {"runs": runs}
        if run_key and run_key not in runs:
            updates.update(
                missing=(
                    f"Run '{run_key}' no longer exists on this dataset: it "
                    "was renamed or deleted. Pick a run above."
                ),
                run_key=None,
                summary=None,
                order=[],
                cluster=None,
                cluster_info=None,
            )
            state.set(updates)
            self._clear_data(ctx)
            return
        if not run_key:
            run_key = runs[-1] if runs else None
            updates["run_key"] = run_key
        if state.sort_by not in COLUMN_KEYS:
            updates.update(sort_by="size", sort_desc=True)
        state.set(updates)
        if run_key is None:
            state.set({"summary": None, "order": []})
            self._clear_data(ctx)
            return

        try:
            table = api.get_cluster_table(
                ctx.dataset, run_key, view=ctx.view if view is None else view
            )
        except InputError as e:
            state.set({"missing": str(e), "summary": None, "order": []})
            self._clear_data(ctx)
            return
        rows = _sorted_rows(
            table["clusters"],
            state.sort_by,
            state.sort_desc,
            table["score_kind"],
        )
        order = [r["id"] for r in rows]
        cid = state.cluster
        info = None
        if cid is not None:
            info = next((r for r in rows if r["id"] == cid), None)
            if info is None:
                cid = None
        summary = {
            k: table[k]
            for k in (
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
        }
        summary["n_edits"] = len(table["edits"])
        state.set(
            {
                "missing": None,
                "summary": summary,
                "order": order,
                "cluster": cid,
                "cluster_info": info,
            }
        )
        ctx.panel.data.set(
            {
                "clusters_table": _table_data(rows, cid),
                "sizes_plot": _plot_data(rows, cid),
            }
        )

    def _clear_data(self, ctx):
        ctx.panel.data.set(
            {
                "clusters_table": {
                    "columns": list(COLUMN_KEYS),
                    "rows": [],
                    "selected_rows": [],
                },
                "sizes_plot": [],
            }
        )

    # ------------------------------------------------------------------
    # Layout
    # ------------------------------------------------------------------

    def render(self, ctx):
        state = ctx.panel.state
        panel = types.Object()
        runs = state.runs or []
        summary = state.summary

        if runs:
            choices = types.DropdownView(label="Clustering run")
            for key in runs:
                choices.add_choice(key, label=key)
            panel.enum(
                "run_key",
                choices.values(),
                default=state.run_key,
                view=choices,
                on_change=self.on_change_run,
            )
        tools = panel.h_stack("tools", align_x="left", gap=1)
        tools.btn(
            "compute_clusters",
            label="Compute clusters",
            icon="add",
            variant="outlined",
            on_click=self.on_compute_clusters,
        )
        tools.btn(
            "label_clusters",
            label="Label clusters",
            icon="label",
            variant="outlined",
            disabled=not state.run_key,
            on_click=self.on_label_clusters,
        )
        tools.btn(
            "compute_projection",
            label="Compute projection",
            icon="scatter_plot",
            variant="outlined",
            on_click=self.on_compute_projection,
        )
        tools.btn(
            "refresh",
            label="Refresh",
            icon="refresh",
            variant="outlined",
            on_click=self.on_refresh,
        )

        if state.missing:
            panel.view("missing_notice", types.Warning(label=state.missing))
        if not runs:
            panel.md(
                "This dataset has no clustering runs yet: compute "
                "embeddings, then **Compute clusters**.",
                name="no_runs",
            )
            return _layout(panel)
        if not summary:
            return _layout(panel)

        panel.md(
            _summary_markdown(state.run_key, summary), name="summary_text"
        )
        panel.md(
            "Cluster sizes (click a bar to show its samples)",
            name="chart_title",
        )
        # A height in px: a plain number would be a percentage of the panel
        panel.plot(
            "sizes_plot",
            layout={
                "xaxis": {"type": "category", "title": {"text": "cluster"}},
                "yaxis": {"title": {"text": "samples"}},
                "bargap": 0.15,
                "height": 280,
                "margin": {"t": 8, "l": 48, "b": 40, "r": 8},
            },
            config={"displayModeBar": False, "scrollZoom": False},
            on_click=self.on_plot_click,
            height="280px",
        )
        table = types.TableView(
            on_click_cell=self.on_table_click,
            # the App's default minimum width overflows a narrow panel
            componentsProps={"table": {"sx": {"minWidth": 0}}},
        )
        for key, label, _ in COLUMNS:
            if key == state.sort_by:
                label += " ▼" if state.sort_desc else " ▲"
            table.add_column(key, label=label)
        panel.list(
            "clusters_table",
            types.Object(),
            view=table,
            label="Clusters (click a row to show it; a header to sort)",
        )

        if state.cluster is not None and state.cluster_info:
            self._render_selected(panel, state)
        return _layout(panel)

    def _render_selected(self, panel, state):
        info = state.cluster_info
        cid = state.cluster
        title = "Noise (cluster -1)" if cid == NOISE else f"Cluster {cid}"
        if info.get("label"):
            title += f" · {info['label']}"
        panel.md(
            f"**{title}**: {info.get('size', 0)} samples",
            name="selected_title",
        )
        nav = panel.h_stack("selected_nav", align_x="left", gap=1)
        nav.btn(
            "show_all",
            label="Show all samples",
            icon="close",
            variant="outlined",
            on_click=self.on_show_all,
        )
        if cid != NOISE:
            panel.str(
                "label_input",
                label="Label",
                description="A name for this cluster",
                default=info.get("label") or "",
            )
            panel.btn(
                "rename",
                label="Rename cluster",
                icon="edit",
                variant="contained",
                on_click=self.on_rename,
            )
        panel.str(
            "tag_input",
            label="Tag",
            description="Adds this tag to every sample of the cluster",
        )
        panel.btn(
            "tag",
            label="Tag samples",
            icon="sell",
            variant="contained",
            on_click=self.on_tag,
        )
        others = [c for c in state.order or [] if c not in (cid, NOISE)]
        if cid != NOISE and others:
            choices = types.DropdownView(label="Merge into")
            for c in others:
                choices.add_choice(c, label=f"cluster {c}")
            panel.enum(
                "merge_into",
                choices.values(),
                view=choices,
                description=(
                    "Moves every sample of this cluster into the chosen one"
                ),
            )
            panel.btn(
                "merge",
                label="Merge clusters",
                icon="merge",
                variant="contained",
                on_click=self.on_merge,
            )


def _layout(panel):
    return types.Property(
        panel,
        view=types.GridView(
            orientation="vertical",
            align_x="left",
            align_y="top",
            gap=2,
        ),
    )


def _first_direction(key, summary):
    """Whether a first click on a column sorts it descending."""
    for k, _, desc in COLUMNS:
        if k == key and desc is not None:
            return desc
    # Cohesion: most cohesive first
    return (summary or {}).get("score_kind") == "strength"


def _sorted_rows(rows, key, desc, score_kind):
    """Rows sorted by ``key``; missing values and the noise row last."""
    key = key if key in COLUMN_KEYS else "size"

    def value(r):
        v = r.get(key)
        if key == "id":
            return int(r["id"])
        if isinstance(v, str):
            return v.lower()
        return v

    present = [r for r in rows if r["id"] != NOISE and value(r) is not None]
    missing = [r for r in rows if r["id"] != NOISE and value(r) is None]
    noise = [r for r in rows if r["id"] == NOISE]
    present.sort(key=lambda r: int(r["id"]))
    present.sort(key=value, reverse=bool(desc))
    missing.sort(key=lambda r: int(r["id"]))
    return present + missing + noise


def _fmt(value, digits=3):
    if value is None:
        return ""
    return f"{value:.{digits}f}"


def _table_data(rows, selected):
    out = []
    selected_rows = []
    for i, r in enumerate(rows):
        if r["id"] == selected:
            selected_rows.append(i)
        out.append(
            [
                "-1 (noise)" if r["id"] == NOISE else r["id"],
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


def _plot_data(rows, selected):
    colors = [
        (
            _BAR_SELECTED
            if r["id"] == selected
            else _BAR_NOISE if r["id"] == NOISE else _BAR
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
            "x": ["noise" if r["id"] == NOISE else r["id"] for r in rows],
            "y": [r["size"] for r in rows],
            "ids": [r["id"] for r in rows],
            "text": hover,
            "hoverinfo": "text",
            "textposition": "none",
            "marker": {"color": colors},
        }
    ]


def _summary_markdown(run_key, summary):
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
    kind = summary.get("score_kind")
    if kind == "distance":
        lines.append(
            "Cohesion: mean distance to the cluster centre (smaller is "
            "tighter)"
        )
    elif kind == "strength":
        lines.append(
            "Cohesion: mean membership strength (larger is more certain)"
        )
    if summary.get("label_field"):
        lines.append(f"Labels in `{summary['label_field']}`")
    if summary.get("n_edits"):
        lines.append(
            f"{summary['n_edits']} manual edits since the run was computed "
            "(quality metrics predate them)"
        )
    return "\n\n".join(lines)
