"""The cluster explorer's events for keeping a run up with its dataset:
open the ``assign_clusters`` form, show only the clusters whose stability
is dissolving, and compare the shown run with another (ARI, AMI, verdicts,
the flows between their clusters), where a click on a flow or a verdict
row shows the samples that moved in the grid. A mixin of
:class:`.explorer.ClusterExplorer`, which provides ``_error``,
``_prompt``, ``_refresh`` and ``_set_cluster``."""

from .. import api
from ..data import InputError
from .explorer_compare_view import (
    COMPARISON,
    FLOWS,
    FLOW_MAP,
    VERDICTS,
    comparison_content,
    empty_comparison,
    moved_text,
    stamped_row,
)
from .explorer_view import dissolving_rows


class CompareEvents:
    """Events of the cluster explorer for assignments, stability and
    comparisons."""

    def on_assign_clusters(self, ctx):
        self._prompt(ctx, "assign_clusters", self._run_param(ctx))

    def on_toggle_dissolving(self, ctx):
        state = ctx.panel.state
        state.only_dissolving = not state.only_dissolving
        self._refresh(ctx)

    def on_compare(self, ctx):
        """Compares the shown run with the run chosen (``value``)."""
        other = ctx.params.get("value") or (
            ctx.panel.state.get("compare_tools") or {}
        ).get("other")
        if other:
            self._compare(ctx, other)

    def on_close_compare(self, ctx):
        state = ctx.panel.state
        updates = empty_comparison()
        updates.update({"compare_tools.other": None, "compare_shown": None})
        state.set(updates)

    def on_flow_click(self, ctx):
        """A click on a cell of the flow map: the samples of the row's
        cluster (``y``) that are in the column's cluster (``x``) shown in
        the grid. A cell the panel's map does not hold (another
        comparison's) is refused."""
        cid, other_id = ctx.params.get("y"), ctx.params.get("x")
        traces = ctx.panel.state.get(FLOW_MAP) or []
        meta = traces[0].get("meta", {}) if traces else {}
        if not (
            self._current(ctx, meta)
            and any(cid in t["y"] and other_id in t["x"] for t in traces)
        ):
            self._compare_out_of_date(ctx)
            return
        self._show_flow(ctx, str(cid), str(other_id))

    def on_flow_row_click(self, ctx):
        row = self._clicked(ctx, FLOWS)
        if row is not None:
            self._show_flow(ctx, str(row["a"]), str(row["b"]))

    def on_verdict_click(self, ctx):
        """A verdict row: the cluster's samples that are not in its best
        match (for the second run: that came from elsewhere)."""
        row = self._clicked(ctx, VERDICTS)
        if row is None:
            return
        summary = ctx.panel.state.get(COMPARISON)
        a, b = summary["run_key"], summary["other_run_key"]
        if row["side"] == "b":
            a, b = b, a
        cid, best = str(row["id"]), str(row["best_match"])
        try:
            view = api.moved_out(ctx.dataset, a, b, cid, best)
        except InputError as e:
            self._error(ctx, e)
            return
        what = f"cluster {cid} of '{a}' not in its best match {best} of '{b}'"
        self._show_moved(ctx, view, what)

    # ------------------------------------------------------------------

    def _filter_rows(self, ctx, rows):
        """The table's rows, only the dissolving clusters when asked and
        the run measured stability."""
        if not ctx.panel.state.only_dissolving:
            return rows
        if all(r.get("stability") is None for r in rows):
            ctx.panel.state.only_dissolving = False
            return rows
        return dissolving_rows(rows)

    def _keep_comparison(self, ctx, run_key, run_keys):
        """Drops a comparison of another run, or of a run that has
        gone."""
        summary = ctx.panel.state.get(COMPARISON)
        if not summary:
            return
        if summary.get("run_key") != run_key or (
            summary.get("other_run_key") not in run_keys
        ):
            ctx.panel.state.set(dict(empty_comparison(), compare_shown=None))

    def _compare(self, ctx, other):
        run_key = ctx.panel.state.run_key
        try:
            out = api.compare_clustering_runs(ctx.dataset, run_key, other)
        except InputError as e:
            self._error(ctx, e)
            return
        updates = comparison_content(out)
        updates["compare_shown"] = None
        ctx.panel.state.set(updates)

    def _current(self, ctx, stamp):
        """Whether a click's stamp (``run_key``, ``other_run_key``) is the
        comparison the panel shows (a missing stamp passes)."""
        summary = ctx.panel.state.get(COMPARISON) or {}
        if not summary or summary.get("run_key") != ctx.panel.state.run_key:
            return False
        return all(
            stamp.get(k, summary.get(k)) == summary.get(k)
            for k in ("run_key", "other_run_key")
        )

    def _clicked(self, ctx, key):
        """The row of comparison table ``key`` clicked, or ``None`` after
        reloading an out-of-date panel."""
        row = ctx.params.get("row")
        if row is None or int(row) < 0:
            return None
        summary = ctx.panel.state.get(COMPARISON) or {}
        found = stamped_row(
            ctx.panel.state.get(key),
            int(row),
            ctx.panel.state.run_key,
            summary.get("other_run_key"),
        )
        if found is None:
            self._compare_out_of_date(ctx)
        return found

    def _show_flow(self, ctx, cid, other_id):
        summary = ctx.panel.state.get(COMPARISON)
        a, b = summary["run_key"], summary["other_run_key"]
        try:
            view = api.moved_samples(ctx.dataset, a, b, cid, other_id)
        except InputError as e:
            self._error(ctx, e)
            return
        what = (
            f"cluster {cid} of '{a}' that are in cluster {other_id} of '{b}'"
        )
        self._show_moved(ctx, view, what)

    def _show_moved(self, ctx, view, what):
        ctx.ops.set_view(view)
        self._set_cluster(ctx, None)
        ctx.panel.state.set(
            {"flagged": None, "compare_shown": moved_text(what, len(view))}
        )
        self._refresh(ctx, view=view)

    def _compare_out_of_date(self, ctx):
        ctx.ops.notify(
            "The comparison was out of date: compare the runs again",
            variant="warning",
        )
        ctx.panel.state.set(dict(empty_comparison(), compare_shown=None))
