"""The cluster explorer panel: browse the clusters of a clustering run, show
a cluster's samples in the grid, and name, tag and merge clusters.

What the panel shows of a run's clusters (the two parts of the table and
the plot, :data:`.explorer_view.CONTENT_KEYS`) is written whole into
``ctx.panel.state``, never into ``ctx.panel.data``: the App (FiftyOne 1.22)
copies everything a panel displays into its state whenever one of its
inputs changes, and displays ``lodash.merge(state, data)``, which merges
lists index by index, so a shorter table or plot written as data keeps the
rows and bars of the copy (of another run, or of a cluster merged away),
even across a page reload. A state key, by contrast, is replaced whole by
every patch and by the App's copies. Every change of run, merge, rename,
refresh or reload rewrites all three keys from the database.

Clicks carry the cluster: a bar its ``ids`` and its run (``meta``), a row
its position in the table the App showed, whose rows hold their cluster id
and run; a row or bar of another run, or a button of another selection, is
refused with a message and the panel reloads. Every change goes through
the plugin's API; what the panel shows is built from plain data in
:mod:`.explorer_view` and laid out in :mod:`.explorer_layout`.
"""

import logging
import threading

import fiftyone.operators as foo

from .. import api, runs
from ..data import InputError
from .explorer_compare import CompareEvents
from .explorer_compare_view import empty_comparison
from .explorer_flags import FlagEvents
from .explorer_keep import KeepEvents
from .explorer_layout import render_panel
from .explorer_view import (
    COLUMN_KEYS,
    HEAD,
    TAIL,
    edit_key,
    empty_content,
    first_direction,
    panel_content,
    row_cluster,
    run_summary,
    shown_columns,
    sorted_rows,
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
sort. Name, tag and merge the selected cluster right below its row. Assign
new samples, show only the dissolving clusters (runs with stability), and
compare the run with another: a click on a flow or a verdict shows the
samples that moved.
"""


def _operator(name):
    return f"{runs.PLUGIN}/{name}"


class ClusterExplorer(KeepEvents, CompareEvents, FlagEvents, foo.Panel):
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
        # What an older version of the panel wrote as data would be merged
        # into what it shows
        ctx.panel.data.clear()
        self._refresh(ctx)

    def on_change_dataset(self, ctx):
        self._set_cluster(ctx, None)
        ctx.panel.state.set({"run_key": None})
        self._clear_content(ctx)
        self._refresh(ctx)

    def on_change_view(self, ctx):
        state = ctx.panel.state
        cid = state.cluster
        same_run = (state.get(HEAD) or {}).get("run_key") == state.run_key
        flagged = self._shows_flagged(ctx)
        if not flagged:
            state.flagged = None
        if (
            cid is not None
            and same_run
            and not flagged
            and not self._shows_cluster(ctx, cid)
        ):
            # The grid moved away from the selected cluster
            self._set_cluster(ctx, None)
        self._refresh(ctx)

    def on_refresh(self, ctx):
        self._refresh(ctx)
        other = (ctx.panel.state.get("comparison") or {}).get("other_run_key")
        if other:
            self._compare(ctx, other)

    def on_change_run(self, ctx):
        run_key = ctx.params.get("value") or ctx.panel.state.run_key
        ctx.panel.state.run_key = run_key
        self._refresh(ctx)

    def on_table_click(self, ctx):
        row = ctx.params.get("row")
        column = ctx.params.get("column")
        path = ctx.params.get("path") or HEAD
        if row is None or path not in (HEAD, TAIL):
            return
        if int(row) < 0:
            keys = shown_columns(ctx.panel.state)
            if column is not None and 0 <= int(column) < len(keys):
                self._sort(ctx, keys[int(column)])
            return
        state = ctx.panel.state
        cid = row_cluster(state.get(path), int(row), state.run_key)
        if cid is None:
            self._out_of_date(ctx)
        else:
            self._select(ctx, cid)

    def on_plot_click(self, ctx):
        cid = ctx.params.get("id")
        if cid is None:
            cid = ctx.params.get("customdata")
        meta = (ctx.params.get("data") or {}).get("meta") or {}
        if "run_key" in meta and meta["run_key"] != ctx.panel.state.run_key:
            cid = None
        if cid is None:
            self._out_of_date(ctx)
        else:
            self._select(ctx, str(cid))

    def on_show_all(self, ctx):
        ctx.ops.clear_view()
        ctx.panel.state.flagged = None
        self._set_cluster(ctx, None)
        self._refresh(ctx, view=ctx.dataset.view())

    def on_rename(self, ctx):
        cid = self._acted_on(ctx)
        if cid is None:
            return
        label = ctx.panel.state.get(f"{edit_key(cid)}.rename.label")
        out = self._edit(ctx, api.rename_cluster, cid, label)
        if out is not None:
            self._edited(ctx, f"Cluster {cid} is now '{out['label']}'")
            self._refresh(ctx)

    def on_tag(self, ctx):
        cid = self._acted_on(ctx)
        if cid is None:
            return
        tag = ctx.panel.state.get(f"{edit_key(cid)}.tag.text")
        out = self._edit(ctx, api.tag_cluster, cid, tag)
        if out is not None:
            self._edited(
                ctx,
                f"Tagged {out['n_samples']} samples of cluster {cid} "
                f"'{out['tag']}'",
            )

    def on_merge(self, ctx):
        """Asks before merging: the panel shows the question and the
        button that confirms it (:meth:`on_confirm_merge`)."""
        cid = self._acted_on(ctx)
        if cid is None:
            return
        into = ctx.panel.state.get(f"{edit_key(cid)}.merge.into")
        if not into:
            self._error(ctx, "Choose the cluster to merge into")
            return
        ctx.panel.state.confirm_merge = {"cluster": cid, "into": into}

    def on_cancel_merge(self, ctx):
        ctx.panel.state.confirm_merge = None

    def on_confirm_merge(self, ctx):
        state = ctx.panel.state
        cid = self._acted_on(ctx)
        asked = state.confirm_merge or {}
        into = ctx.params.get("into")
        if cid is None or asked != {"cluster": cid, "into": into}:
            if cid is not None:
                self._out_of_date(ctx)
            return
        out = self._edit(ctx, api.merge_clusters, [cid, into], into=into)
        if out is None:
            return
        ctx.ops.notify(
            f"Merged cluster {cid} into {out['into']} "
            f"({out['size']} samples)",
            variant="success",
        )
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
            ctx.panel.state.run_key = run_key
        self._refresh(ctx)
        ctx.ops.reload_samples()

    # ------------------------------------------------------------------
    # Helpers (state and data only; the work is done by the API)
    # ------------------------------------------------------------------

    def _error(self, ctx, error):
        logger.info("Cluster explorer: %s", error)
        ctx.ops.notify(str(error), variant="error")

    def _acted_on(self, ctx):
        """The cluster a button of the selected cluster acts on: the id it
        carries, if that cluster is still the one selected; else ``None``
        after telling the user (a button shown for another selection)."""
        cid = ctx.params.get("cluster")
        selected = ctx.panel.state.cluster
        if selected is None:
            return None
        if cid is not None and str(cid) != selected:
            self._out_of_date(ctx)
            return None
        return selected

    def _out_of_date(self, ctx):
        """A click on a row, bar or button that the App showed for another
        run or selection: says so and shows what is current."""
        ctx.ops.notify(
            "The cluster explorer was out of date and has been reloaded: "
            "click the cluster again",
            variant="warning",
        )
        self._refresh(ctx)

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

    def _set_cluster(self, ctx, cid):
        """Selects cluster ``cid`` (``None``: none). A new selection starts
        with fresh inputs: those of any other selection go, and the merge
        question with them."""
        state = ctx.panel.state
        updates = {"cluster": cid}
        if cid is None:
            updates["cluster_info"] = None
        if cid is None or cid != state.cluster:
            updates["confirm_merge"] = None
            for key in ctx.panel_state or {}:
                if key.startswith("edit_"):
                    updates[key] = None
            if cid is not None:
                updates[edit_key(cid)] = {}
        state.set(updates)

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
        """Shows cluster ``cid`` in the grid and selects it, its label in
        the label input when the selection is new."""
        state = ctx.panel.state
        try:
            view = api.cluster_view(ctx.dataset, state.run_key, cid)
        except InputError as e:
            self._error(ctx, e)
            self._refresh(ctx)
            return
        ctx.ops.set_view(view)
        new = cid != state.cluster
        self._set_cluster(ctx, cid)
        self._refresh(ctx, view=view)
        info = state.cluster_info
        if new and info is not None and state.cluster == cid:
            key = f"{edit_key(cid)}.rename.label"
            state.set({key: info.get("label") or ""})

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
        table from the database into the panel's state."""
        if ctx.dataset is None:
            ctx.panel.state.set({"runs": [], "run_key": None, "summary": None})
            self._clear_content(ctx)
            return
        run_key = self._refresh_runs(ctx)
        if run_key is None:
            return
        if self._left_run(ctx, run_key):
            view = ctx.dataset.view()
        self._refresh_table(ctx, run_key, ctx.view if view is None else view)

    def _left_run(self, ctx, run_key):
        """When the panel showed another run than ``run_key``: drops its
        selection, and its cluster from the grid; returns whether the grid
        went back to every sample."""
        state = ctx.panel.state
        shown = (state.get(HEAD) or {}).get("run_key")
        if shown is None or shown == run_key:
            return False
        cid = state.cluster
        self._set_cluster(ctx, None)
        if cid is None:
            return False
        ctx.ops.clear_view()
        return True

    def _refresh_runs(self, ctx):
        """Reloads the run list and settles the chosen run (the latest when
        none is, none when it has gone) and the sort order; returns the run
        to show, or ``None`` after clearing what the panel shows."""
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
            )
            state.set(updates)
            self._set_cluster(ctx, None)
            self._clear_content(ctx)
            return None
        if not run_key:
            run_key = run_keys[-1] if run_keys else None
            updates["run_key"] = run_key
        if state.sort_by not in COLUMN_KEYS:
            updates.update(sort_by="size", sort_desc=True)
        state.set(updates)
        if run_key is None:
            state.set({"summary": None})
            self._clear_content(ctx)
        return run_key

    def _refresh_table(self, ctx, run_key, view):
        """Reloads the run's summary and cluster table, with counts in
        ``view``, keeping the selected cluster while it exists; replaces
        the table and plot whole."""
        state = ctx.panel.state
        try:
            dup_key = self._settle_dup_run(ctx)  # the Duplicates column
            table = api.get_cluster_table(
                ctx.dataset, run_key, view=view, dup_key=dup_key
            )
        except InputError as e:
            state.set({"missing": str(e), "summary": None})
            self._set_cluster(ctx, None)
            self._clear_content(ctx)
            return
        rows = sorted_rows(table["clusters"], state.sort_by, state.sort_desc)
        rows = self._filter_rows(ctx, rows)
        self._keep_comparison(ctx, run_key, state.runs or [])
        cid = state.cluster
        info = next((r for r in rows if r["id"] == cid), None)
        if info is None and cid is not None:
            self._set_cluster(ctx, None)
            cid = None
        updates = {
            "missing": None,
            "summary": run_summary(table),
            "cluster_info": info,
        }
        updates.update(panel_content(run_key, rows, cid))
        state.set(updates)

    def _clear_content(self, ctx):
        ctx.panel.state.set(dict(empty_content(), **empty_comparison()))

    def render(self, ctx):
        return render_panel(ctx.panel.state, self)
