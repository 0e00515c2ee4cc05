"""The cluster explorer panel: browse the clusters of a clustering run, show
a cluster's samples in the grid, and name, tag and merge clusters.

The panel keeps in ``ctx.panel.state`` only what is small and serialisable
(the run and cluster chosen, the sort order, the run's summary, the cluster
ids in display order and the values typed into the panel's inputs); the
table rows and the plot traces go through ``ctx.panel.data``. Every change
goes through the plugin's API; what the panel shows is built from plain
data in :mod:`.explorer_view`.
"""

import logging
import threading

import fiftyone.operators as foo

from .. import api, runs
from ..data import InputError
from .explorer_view import (
    COLUMN_KEYS,
    COLUMNS,
    empty_data,
    first_direction,
    plot_data,
    render_panel,
    run_summary,
    sorted_rows,
    table_data,
)

logger = logging.getLogger(__name__)

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
    return f"{runs.PLUGIN}/{name}"


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
        out = self._edit_selected(ctx, api.rename_cluster, state.label_input)
        if out is not None:
            self._edited(
                ctx, f"Cluster {state.cluster} is now '{out['label']}'"
            )
            self._refresh(ctx)

    def on_tag(self, ctx):
        state = ctx.panel.state
        out = self._edit_selected(ctx, api.tag_cluster, state.tag_input)
        if out is not None:
            self._edited(
                ctx,
                f"Tagged {out['n_samples']} samples of cluster "
                f"{state.cluster} '{out['tag']}'",
            )

    def on_merge(self, ctx):
        state = ctx.panel.state
        cid, into = state.cluster, state.merge_into
        if cid is None:
            return
        if not into:
            self._error(ctx, "Choose the cluster to merge into")
            return
        out = self._edit(ctx, api.merge_clusters, [cid, into], into=into)
        if out is None:
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
        self._prompt(ctx, "compute_clusters", params)

    def on_label_clusters(self, ctx):
        run_key = ctx.panel.state.run_key
        params = {"run_key": run_key} if run_key else {}
        self._prompt(ctx, "label_clusters", params)

    def on_compute_projection(self, ctx):
        # A projection of the run's samples records the run, so the
        # Embeddings panel can colour by its clusters
        run_key = ctx.panel.state.run_key
        params = {"source": "run", "run_key": run_key} if run_key else {}
        self._prompt(ctx, "compute_projection", params)

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

    def _edit_selected(self, ctx, edit, value):
        """Calls ``edit(dataset, run_key, cluster, value)`` of the API on
        the selected cluster; ``None`` when no cluster is selected (see
        :meth:`_edit`)."""
        cid = ctx.panel.state.cluster
        if cid is None:
            return None
        return self._edit(ctx, edit, cid, value)

    def _edit(self, ctx, edit, *args, **kwargs):
        """Calls ``edit(dataset, run_key, *args, **kwargs)`` of the API;
        returns its result, or ``None`` after showing the user why it was
        refused."""
        try:
            return edit(ctx.dataset, ctx.panel.state.run_key, *args, **kwargs)
        except InputError as e:
            self._error(ctx, e)
            self._refresh(ctx)  # the run or cluster may have gone
            return None

    def _edited(self, ctx, message):
        """Tells the user what an edit did and reloads the grid."""
        ctx.ops.notify(message, variant="success")
        ctx.ops.reload_samples()

    def _prompt(self, ctx, name, params):
        """Opens the form of the plugin's operator ``name``."""
        ctx.prompt(
            _operator(name), params=params, on_success=self.on_operator_done
        )

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
            state.sort_desc = first_direction(key, state.summary)
            state.sort_by = key
        self._refresh(ctx)

    def _refresh(self, ctx, view=None):
        """Reloads the run list, the chosen run's summary and the cluster
        table from the database into the panel's state and data."""
        if ctx.dataset is None:
            ctx.panel.state.set({"runs": [], "run_key": None, "summary": None})
            self._clear_data(ctx)
            return
        run_key = self._refresh_runs(ctx)
        if run_key is not None:
            self._refresh_table(
                ctx, run_key, ctx.view if view is None else view
            )

    def _refresh_runs(self, ctx):
        """Reloads the run list and settles the chosen run (the latest when
        none is, none when it has gone) and the sort order; returns the run
        to show, or ``None`` after clearing the panel's data."""
        state = ctx.panel.state
        run_keys = api.list_clustering_runs(ctx.dataset)
        run_key = state.run_key
        updates = {"runs": run_keys}
        if run_key and run_key not in run_keys:
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
            return None
        if not run_key:
            run_key = run_keys[-1] if run_keys else None
            updates["run_key"] = run_key
        if state.sort_by not in COLUMN_KEYS:
            updates.update(sort_by="size", sort_desc=True)
        state.set(updates)
        if run_key is None:
            state.set({"summary": None, "order": []})
            self._clear_data(ctx)
        return run_key

    def _refresh_table(self, ctx, run_key, view):
        """Reloads the run's summary and cluster table, with counts in
        ``view``, keeping the selected cluster while it exists."""
        state = ctx.panel.state
        try:
            table = api.get_cluster_table(ctx.dataset, run_key, view=view)
        except InputError as e:
            state.set({"missing": str(e), "summary": None, "order": []})
            self._clear_data(ctx)
            return
        rows = sorted_rows(table["clusters"], state.sort_by, state.sort_desc)
        cid = state.cluster
        info = next((r for r in rows if r["id"] == cid), None)
        if info is None:
            cid = None
        state.set(
            {
                "missing": None,
                "summary": run_summary(table),
                "order": [r["id"] for r in rows],
                "cluster": cid,
                "cluster_info": info,
            }
        )
        ctx.panel.data.set(
            {
                "clusters_table": table_data(rows, cid),
                "sizes_plot": plot_data(rows, cid),
            }
        )

    def _clear_data(self, ctx):
        ctx.panel.data.set(empty_data())

    def render(self, ctx):
        return render_panel(ctx.panel.state, self)
