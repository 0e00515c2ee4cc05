"""The cluster explorer's events for what curation actions flag: show the
label suspects or the outliers of a cluster or of the whole run in the
grid, most suspicious first, tag them, and open the actions' forms. A
mixin of :class:`.explorer.ClusterExplorer`, which provides ``_acted_on``,
``_error``, ``_edited``, ``_prompt`` and ``_refresh``."""

from .. import api
from ..data import InputError


class FlagEvents:
    """Events of the cluster explorer for flagged samples."""

    def on_show_flagged(self, ctx):
        """Shows the label suspects or the outliers (``kind``) of the
        selected cluster (with ``cluster``) or of the run, most suspicious
        first."""
        kind = ctx.params.get("kind")
        cid = ctx.params.get("cluster")
        if cid is not None:
            cid = self._acted_on(ctx)
            if cid is None:
                return
        try:
            view = api.flagged_view(
                ctx.dataset, ctx.panel.state.run_key, kind, cid
            )
        except InputError as e:
            self._error(ctx, e)
            return
        ctx.ops.set_view(view)
        ctx.panel.state.flagged = {"kind": kind, "cluster": cid}
        self._refresh(ctx, view=view)

    def on_tag_flagged(self, ctx):
        """Tags the flagged samples the grid shows (see
        :meth:`on_show_flagged`) with the tag typed next to the button."""
        shown = ctx.panel.state.flagged or {}
        tag = (ctx.panel.state.get("flag_tools.tag") or "").strip()
        if not shown or not tag:
            self._error(ctx, "Show suspects or outliers, and type a tag")
            return
        try:
            view = self._flagged_view(ctx)
        except InputError as e:
            self._error(ctx, e)
            return
        view.tag_samples(tag)
        self._edited(ctx, f"Tagged {len(view)} {shown['kind']} '{tag}'")

    def on_audit_labels(self, ctx):
        self._prompt(ctx, "audit_labels", self._run_param(ctx))

    def on_compute_outliers(self, ctx):
        self._prompt(ctx, "compute_outliers", self._run_param(ctx))

    def _run_param(self, ctx):
        run_key = ctx.panel.state.run_key
        return {"run_key": run_key} if run_key else {}

    def _shows_flagged(self, ctx):
        """Whether the App's view starts with the flagged samples the panel
        showed last."""
        if not ctx.panel.state.flagged:
            return False
        try:
            expected = self._flagged_view(ctx)._serialize(include_uuids=False)
        except InputError:
            return False
        current = ctx.view._serialize(include_uuids=False)
        return current[: len(expected)] == expected

    def _flagged_view(self, ctx):
        """The flagged samples the panel showed last (see
        :meth:`on_show_flagged`), as they are now."""
        shown = ctx.panel.state.flagged
        return api.flagged_view(
            ctx.dataset,
            ctx.panel.state.run_key,
            shown["kind"],
            shown.get("cluster"),
        )
