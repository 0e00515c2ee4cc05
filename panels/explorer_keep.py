"""The cluster explorer's events for deciding what to keep: the chosen
duplicates run (the latest by default) and its Duplicates column, its
groups side by side in the grid (of the selected cluster or of all), the
histogram of nearest-neighbour similarities that its threshold was chosen
from, and the forms of Find duplicates and Select subset with the run
preset. A mixin of :class:`.explorer.ClusterExplorer`, which provides
``_acted_on``, ``_error``, ``_out_of_date``, ``_prompt``, ``_refresh`` and
``on_operator_done``; what it shows is laid out in
:mod:`.explorer_keep_view`.

Everything it shows lives whole in the panel's state, like the cluster
table (see :mod:`.explorer`): ``dup_runs``, ``dup_key``, ``dup_summary``,
and the histogram's traces and text (:data:`.explorer_keep_view.HISTOGRAM`),
stamped with the duplicates run or field they show.
"""

from .. import api, runs
from ..data import InputError
from .explorer_keep_view import (
    DUPLICATES,
    HISTOGRAM,
    histogram_content,
    no_histogram,
)


class KeepEvents:
    """Events of the cluster explorer for duplicates and subsets."""

    def on_find_duplicates(self, ctx):
        """Opens Find duplicates with the run's embeddings field and the
        run (compare within its clusters) preset."""
        state = ctx.panel.state
        params = {}
        if state.run_key:
            params["run_key"] = state.run_key
        field = (state.summary or {}).get("embeddings_field")
        if field:
            params["embeddings_field"] = field
        ctx.prompt(
            self._keep_operator("find_duplicates"),
            params=params,
            on_success=self.on_duplicates_done,
        )

    def on_select_subset(self, ctx):
        """Opens Select subset with the run and, once a duplicates run
        exists, the chosen one's samples not kept skipped."""
        state = ctx.panel.state
        params = {"run_key": state.run_key} if state.run_key else {}
        if state.dup_key:
            params["dup_key"] = state.dup_key
        ctx.prompt(
            self._keep_operator("select_subset"),
            params=params,
            on_success=self.on_subset_done,
        )

    def on_duplicates_done(self, ctx):
        """After Find duplicates: the new run becomes the chosen one."""
        result = ctx.params.get("result") or {}
        dup_key = result.get("dup_key") if isinstance(result, dict) else None
        if dup_key:
            ctx.panel.state.set({"dup_key": dup_key, **no_histogram()})
        self.on_operator_done(ctx)

    def on_subset_done(self, ctx):
        """After Select subset: the grid shows the subset's saved view."""
        result = ctx.params.get("result") or {}
        names = result.get("saved_views") if isinstance(result, dict) else []
        self.on_operator_done(ctx)
        if not names or not ctx.dataset.has_saved_view(names[0]):
            return
        view = ctx.dataset.load_saved_view(names[0])
        ctx.ops.set_view(view)
        ctx.ops.notify(
            f"The grid shows saved view '{names[0]}' ({len(view)} samples)",
            variant="success",
        )

    def on_change_dup_run(self, ctx):
        dup_key = ctx.params.get("value") or ctx.panel.state.dup_key
        ctx.panel.state.set({"dup_key": dup_key, **no_histogram()})
        self._refresh(ctx)

    def on_show_duplicates(self, ctx):
        """Shows the groups of the chosen duplicates run side by side in
        the grid, group by group, the kept sample first: the groups with a
        member in the selected cluster (with ``cluster``) or all."""
        state = ctx.panel.state
        if ctx.params.get("dup_key") != state.dup_key:
            self._out_of_date(ctx)
            return
        cid = ctx.params.get("cluster")
        if cid is not None:
            cid = self._acted_on(ctx)
            if cid is None:
                return
        flagged = {"kind": DUPLICATES, "cluster": cid}
        flagged["dup_key"] = state.dup_key
        try:
            view = self._duplicates_view(ctx, flagged)
        except InputError as e:
            self._error(ctx, e)
            return
        # flagged first: the App may announce the view change (and the
        # panel check whether it still shows the cluster) before it applies
        # what follows
        state.flagged = flagged
        ctx.ops.set_view(view)
        self._refresh(ctx, view=view)

    def on_dup_histogram(self, ctx):
        """Shows (or hides) the histogram of each sample's similarity to
        its nearest neighbour, with the chosen duplicates run's threshold,
        or, before any, the suggested one on the run's embeddings."""
        state = ctx.panel.state
        if state.get(HISTOGRAM):
            state.set(no_histogram())
            return
        try:
            content = self._histogram(ctx)
        except InputError as e:
            self._error(ctx, e)
            return
        state.set(content)

    # ------------------------------------------------------------------
    # Helpers
    # ------------------------------------------------------------------

    def _keep_operator(self, name):
        return f"{runs.PLUGIN}/{name}"

    def _settle_dup_run(self, ctx):
        """Reloads the duplicates runs and settles the chosen one (the
        latest when none is or it has gone); returns its key or ``None``.
        The cluster table counts its samples not kept per cluster."""
        state = ctx.panel.state
        dup_keys = _by_time(ctx.dataset, api.list_duplicates_runs(ctx.dataset))
        dup_key = state.dup_key if state.dup_key in dup_keys else None
        dup_key = dup_key or (dup_keys[-1] if dup_keys else None)
        updates = {"dup_runs": dup_keys, "dup_key": dup_key}
        if dup_key != state.dup_key:
            updates.update(no_histogram())
        updates["dup_summary"] = _dup_summary(ctx.dataset, dup_key)
        state.set(updates)
        return dup_key

    def _histogram(self, ctx):
        """The histogram's content for the chosen duplicates run: the
        preview stored with it (a suggested threshold), else one computed
        on its field; before any run, on the clustering run's field."""
        state = ctx.panel.state
        summary = state.dup_summary or {}
        stored = None
        if state.dup_key:
            results = api.get_duplicates_run_info(ctx.dataset, state.dup_key)
            stored = results["results"].get("preview")
            field = summary.get("embeddings_field")
            within = summary.get("run_key")
        else:
            field = (state.summary or {}).get("embeddings_field")
            within = None
        if not field:
            raise InputError("The clustering run has no embeddings field")
        pv = stored or self._preview(ctx, field, within)
        return histogram_content(pv, state.dup_key, field, summary)

    def _preview(self, ctx, field, run_key):
        from ..operators.keep import PREVIEW_FORM_MAX

        n = len(ctx.dataset)
        if n > PREVIEW_FORM_MAX:
            raise InputError(
                f"The dataset has more than {PREVIEW_FORM_MAX:,} samples: "
                "the histogram is stored with runs whose threshold was "
                "suggested (leave the threshold empty)"
            )
        return api.duplicate_threshold_preview(ctx.dataset, field, run_key)

    def _duplicates_view(self, ctx, shown):
        """The groups the panel showed (see :meth:`on_show_duplicates`)."""
        cid = shown.get("cluster")
        return api.duplicate_groups_view(
            ctx.dataset,
            shown["dup_key"],
            run_key=None if cid is None else ctx.panel.state.run_key,
            cluster_id=cid,
        )

    def _shows_flagged(self, ctx):
        """Whether the App's view starts with the flagged samples the panel
        showed last; for duplicate groups, recognised from the view itself
        (the App may announce the view change with the panel's state of
        before the click), and then recorded as shown."""
        if super()._shows_flagged(ctx):
            return True
        state = ctx.panel.state
        if not state.dup_key:
            return False
        current = ctx.view._serialize(include_uuids=False)
        for cid in dict.fromkeys([state.cluster, None]):
            shown = {"kind": DUPLICATES, "cluster": cid}
            shown["dup_key"] = state.dup_key
            try:
                view = self._duplicates_view(ctx, shown)
            except InputError:
                return False
            expected = view._serialize(include_uuids=False)
            if current[: len(expected)] == expected:
                state.flagged = shown
                return True
        return False

    def _flagged_view(self, ctx):
        """The flagged samples the panel showed last: duplicate groups
        here, what curation actions flagged otherwise."""
        shown = ctx.panel.state.flagged or {}
        if shown.get("kind") == DUPLICATES:
            return self._duplicates_view(ctx, shown)
        return super()._flagged_view(ctx)


def _by_time(dataset, keys):
    """Run keys, oldest first."""
    return sorted(keys, key=lambda k: dataset.get_run_info(k).timestamp)


def _dup_summary(dataset, dup_key):
    """What the panel shows of a duplicates run."""
    if not dup_key:
        return None
    info = api.get_duplicates_run_info(dataset, dup_key)
    config, results = info["config"], info["results"]
    return dict(
        dup_key=dup_key,
        embeddings_field=config.get("embeddings_field"),
        run_key=config.get("run_key"),
        threshold=config.get("threshold"),
        suggested=bool(config.get("threshold_suggested")),
        n_samples=config.get("n_samples"),
        n_groups=results.get("n_groups"),
        n_in_groups=results.get("n_in_groups"),
        n_not_kept=results.get("n_not_kept"),
    )
