"""What the cluster explorer shows for deciding what to keep, and where:
the row of buttons (Find duplicates, Select N, show the duplicate groups,
the similarity histogram), the chosen duplicates run, the histogram with
its counts and example pairs, and the selected cluster's button that shows
its groups. Built from the panel's state only; the inputs call the events
of :mod:`.explorer_keep`."""

import fiftyone.operators.types as types

from ..operators.keep import preview_markdown, preview_plot
from .explorer_view import md_code

# The kind of flagged samples the grid shows: duplicate groups
DUPLICATES = "duplicates"
# State keys: the histogram's traces, its text, and what it shows
HISTOGRAM = "dup_histogram"
HISTOGRAM_TEXT = "dup_histogram_text"
HISTOGRAM_FOR = "dup_histogram_for"

_ABOVE = "#2c7be5"
_BELOW = "#ff6d04"


def no_histogram():
    """The state updates that hide the histogram."""
    return {HISTOGRAM: [], HISTOGRAM_TEXT: None, HISTOGRAM_FOR: None}


def histogram_content(pv, dup_key, field, summary):
    """The histogram's state for a threshold preview ``pv`` (see
    :func:`api.duplicate_threshold_preview`): bars at or above the
    threshold in blue (the run's, or the suggested one before any run),
    the counts per threshold and example pairs, stamped with the
    duplicates run and field."""
    threshold = (summary or {}).get("threshold") or pv["suggested"]
    traces, _ = preview_plot(pv)
    lows = pv["histogram"]["lo"]
    traces[0]["marker"] = {
        "color": [_ABOVE if lo >= threshold else _BELOW for lo in lows]
    }
    traces[0]["meta"] = {"dup_key": dup_key, "field": field}
    if dup_key:
        how = "suggested" if summary.get("suggested") else "given"
        head = (
            f"**Run {md_code(dup_key)}** used threshold "
            f"**{threshold:.4g}** ({how}) on {md_code(field)}"
        )
    else:
        head = f"No duplicates run yet: the preview on {md_code(field)}"
    return {
        HISTOGRAM: traces,
        HISTOGRAM_TEXT: head + "\n\n" + preview_markdown(pv),
        HISTOGRAM_FOR: {"dup_key": dup_key, "field": field},
    }


def summary_markdown(summary):
    """One line about the chosen duplicates run."""
    s = summary
    within = f" within the clusters of {md_code(s['run_key'])}"
    how = "suggested" if s.get("suggested") else "given"
    return (
        f"Duplicates run {md_code(s['dup_key'])}: {s['n_groups']:,} groups "
        f"({s['n_in_groups']:,} samples), **{s['n_not_kept']:,} not kept**; "
        f"cosine threshold {s['threshold']:.4g} ({how}) on "
        f"{md_code(s['embeddings_field'])}"
        + (within if s.get("run_key") else "")
    )


def render_keep_tools(panel, state, events):
    """Find duplicates, Select N, the duplicates run and its groups, and
    the similarity histogram."""
    if not state.run_key:
        return
    summary = state.dup_summary
    tools = panel.h_stack("keep_tools", align_x="left", gap=1)
    _button(
        tools,
        events.on_find_duplicates,
        "find_duplicates",
        "Find duplicates",
        "content_copy",
    )
    _button(
        tools,
        events.on_select_subset,
        "select_subset",
        "Select N",
        "filter_list",
    )
    if summary and summary.get("n_groups"):
        _button(
            tools,
            events.on_show_duplicates,
            "show_all_duplicates",
            f"Show {summary['n_groups']:,} duplicate groups",
            "visibility",
            params={"dup_key": summary["dup_key"]},
        )
    shown = bool(state.get(HISTOGRAM))
    _button(
        tools,
        events.on_dup_histogram,
        "dup_histogram_toggle",
        "Hide histogram" if shown else "Similarity histogram",
        "bar_chart",
    )
    dup_keys = state.dup_runs or []
    if len(dup_keys) > 1:
        # No default: see the run dropdown in .explorer_layout
        choices = types.DropdownView(label="Duplicates run")
        for key in dup_keys:
            choices.add_choice(key, label=key)
        panel.enum(
            "dup_key",
            choices.values(),
            view=choices,
            on_change=events.on_change_dup_run,
        )
    if summary:
        panel.md(summary_markdown(summary), name="dup_summary_text")
    if shown:
        panel.md(
            "The similarity histogram is below the cluster table",
            name="dup_histogram_below",
        )


def render_keep_histogram(panel, state):
    """The similarity histogram (below the cluster table: the table and
    its Duplicates column stay in sight), its counts and example pairs."""
    if not state.run_key or not state.get(HISTOGRAM):
        return
    panel.md(
        "**Similarity of each sample to its nearest neighbour** (blue: at "
        "or above the threshold; samples, log scale)",
        name="dup_histogram_title",
    )
    _, layout = preview_plot(
        {"histogram": {"lo": [], "hi": [], "count": []}, "suggested": 1}
    )
    panel.plot(
        HISTOGRAM,
        layout=layout,
        config={"displayModeBar": False, "scrollZoom": False},
        height="260px",
    )
    panel.md(state.get(HISTOGRAM_TEXT) or "", name=HISTOGRAM_TEXT)


def render_cluster_duplicates(box, info, cid, state, events):
    """The selected cluster's button that shows its duplicate groups."""
    n = info.get("dup_in_groups")
    if not n or not state.dup_key:
        return
    row = box.h_stack("dups", align_x="left", gap=1)
    _button(
        row,
        events.on_show_duplicates,
        "show_duplicates",
        f"Show its duplicate groups ({n} samples)",
        "visibility",
        params={"dup_key": state.dup_key, "cluster": cid},
    )


def _button(container, on_click, name, label, icon, **kwargs):
    container.btn(
        name,
        label=label,
        icon=icon,
        variant="outlined",
        on_click=on_click,
        **kwargs,
    )
