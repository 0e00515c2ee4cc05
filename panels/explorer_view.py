"""What the cluster explorer shows, built from plain data: the table's
columns and rows, the sizes plot's traces, the run's summary text, and the
text that user or LLM labels go into (as inline code in Markdown, as
entities in Plotly's hover text). Nothing here reads the
database or the panel's context; the layout is in :mod:`.explorer_layout`.

The tables and the plot are kept whole in the panel's state under
:data:`CONTENT_KEYS` (see :mod:`.explorer` for why), each stamped with the
run it shows, so that a click is resolved against the very rows the App
displayed and refused when they belong to another run.
"""

import html
import re

from ..core.compare import DISSOLVING, stability_word
from ..core.methods import METHODS, SCORE_KINDS
from ..core.metrics import NOISE_ID
from ..core.report import METRICS

# (key, label, first sort direction is descending)
COLUMNS = (
    ("id", "Cluster", False),
    ("label", "Label", False),
    ("size", "Size", True),
    ("in_view", "In view", True),
    ("score_mean", "Cohesion", None),  # direction depends on score kind
)
# Columns shown when the run has the curation action that fills them
CURATION_COLUMNS = (
    ("majority_label", "Majority label", False),
    ("purity", "Purity", False),
    ("suspects", "Suspects", True),
    ("outliers", "Outliers", True),
    ("duplicates", "Duplicates", True),  # not kept by a duplicates run
)
# Columns shown when the run measured stability / had samples assigned
KEEPING_COLUMNS = (
    ("stability", "Stability", False),
    ("assigned", "Assigned", True),
)
OPTIONAL_COLUMNS = CURATION_COLUMNS + KEEPING_COLUMNS
COLUMN_KEYS = tuple(c[0] for c in COLUMNS + OPTIONAL_COLUMNS)
COLUMN_LABELS = {c[0]: c[1] for c in COLUMNS + OPTIONAL_COLUMNS}
# A column the table does not show: the cluster id of each row
ID_COLUMN = "cluster_id"

# The state keys of what the panel shows of a run's clusters: the table's
# rows down to the selected cluster, the rows after it, and the plot
HEAD, TAIL, PLOT = "clusters_table", "clusters_after", "sizes_plot"
CONTENT_KEYS = (HEAD, TAIL, PLOT)

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
    "flags",
)

_BAR = "#ff6d04"
_BAR_SELECTED = "#2c7be5"
_BAR_NOISE = "#9e9e9e"

# ASCII punctuation: what Markdown and HTML build on
_MD_PUNCTUATION = re.compile(r"[!-/:-@\[-`{-~]")
_PLAIN_NAME = re.compile(r"^[\w.\-]+$")


# ----------------------------------------------------------------------
# Text from users, LLMs and the database
# ----------------------------------------------------------------------


def md_text(value):
    """``value`` as Markdown that renders as exactly that text, on one
    line: every ASCII punctuation character as a numeric character
    reference, which Markdown shows as the character and never reads as
    markup (no HTML, link, autolink, emphasis or heading can come out of a
    label; backslash escapes would still let GFM autolink a URL)."""
    text = " ".join(str(value).split())
    return _MD_PUNCTUATION.sub(lambda m: f"&#{ord(m.group())};", text)


def md_label(value):
    """A cluster label as Markdown inline code: shown exactly as typed, in
    the way the panel shows names. Inside a code span nothing is markup,
    and, unlike escaped text, nothing is autolinked (the App's Markdown
    links URLs in text however they are escaped)."""
    text = " ".join(str(value).split())
    longest = max((len(r) for r in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    if text.startswith("`") or text.endswith("`"):
        text = f" {text} "
    return f"{fence}{text}{fence}"


def md_code(value):
    """``value`` as inline code when it is a plain name (a field or a run
    key), else as escaped text."""
    text = str(value)
    if _PLAIN_NAME.match(text):
        return f"`{text}`"
    return md_text(text)


def plot_text(value):
    """``value`` for Plotly's hover text, which reads a few HTML tags:
    entities instead of ``<``, ``>`` and ``&``."""
    return html.escape(" ".join(str(value).split()), quote=False)


def cluster_name(cid, label=None):
    """A cluster as a user reads it, as plain text (not Markdown)."""
    name = "noise (cluster -1)" if cid == NOISE_ID else f"cluster {cid}"
    return f"{name} · {label}" if label else name


# ----------------------------------------------------------------------
# The run's summary
# ----------------------------------------------------------------------


def run_summary(table):
    """What the panel's state keeps of a run's cluster table (see
    :func:`api.get_cluster_table`)."""
    summary = {k: table[k] for k in SUMMARY_KEYS}
    summary["n_edits"] = len(table["edits"])
    rows = table["clusters"]
    summary["stability"] = any(r.get("stability") is not None for r in rows)
    summary["n_dissolving"] = len(dissolving_rows(rows))
    return summary


def _fmt(value, digits=3):
    if value is None:
        return ""
    return f"{value:.{digits}f}"


def summary_markdown(run_key, summary):
    """The run's summary: method, parameters, sizes, quality metrics, what
    the cohesion column means, labels and edits."""
    params = summary.get("params") or {}
    param_text = (
        ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "defaults"
    )
    lines = [
        f"**{md_text(run_key)}**: {md_code(summary.get('method'))} "
        f"({md_text(param_text)}) on "
        f"{md_code(summary.get('embeddings_field'))}; "
        f"{summary.get('n_clusters')} clusters of "
        f"{summary.get('n_samples')} samples in "
        f"{md_code(summary.get('cluster_field'))}",
    ]
    lines += metric_markdown(summary)
    kind = SCORE_KINDS.get(summary.get("score_kind"))
    if kind is not None:
        lines.append(f"Cohesion: {kind.cohesion}")
    if summary.get("label_field"):
        lines.append(f"Labels in {md_code(summary['label_field'])}")
    if summary.get("n_edits"):
        lines.append(
            f"{summary['n_edits']} manual edits since the run was computed "
            "(quality metrics predate them)"
        )
    return "\n\n".join(lines)


def metric_markdown(summary):
    """One line per quality metric: its value, which direction is better
    and what it measures; the noise share only for methods with noise."""
    method = summary.get("method")
    noisy = method in METHODS.names() and METHODS.get(method).density_based
    out = []
    for key, value in (summary.get("metrics") or {}).items():
        if key not in METRICS or not isinstance(value, (int, float)):
            continue
        if key == "noise_fraction" and not noisy:
            continue
        name, meaning = METRICS[key]
        shown = f"{value:.1%}" if key == "noise_fraction" else _fmt(value)
        out.append(f"{md_text(name)} **{shown}**: {md_text(meaning)}")
    return ["Quality:\n\n" + "\n".join(f"- {x}" for x in out)] if out else []


def selected_markdown(cid, info):
    """The heading of the selected cluster."""
    title = "Noise (cluster -1)" if cid == NOISE_ID else f"Cluster {cid}"
    if info.get("label"):
        title += f" · {md_label(info['label'])}"
    return f"**{title}**: {info.get('size', 0)} samples"


def merge_question(source, target):
    """The question asked before merging: ``source`` and ``target`` are
    rows of the cluster table."""

    def name(row):
        text = f"cluster {row['id']}"
        if row.get("label"):
            text += f" · {md_label(row['label'])}"
        return f"**{text}** ({row['size']} samples)"

    return (
        f"Merge {name(source)} into {name(target)}? Every sample of "
        f"cluster {source['id']} moves into cluster {target['id']}, and "
        f"cluster {source['id']} no longer exists. This cannot be undone."
    )


# ----------------------------------------------------------------------
# Rows, tables and the plot
# ----------------------------------------------------------------------


def first_direction(key, summary):
    """Whether a first click on a column sorts it descending."""
    for k, _, desc in COLUMNS + OPTIONAL_COLUMNS:
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


def _filled(key, value):
    """Whether a row has a value for an optional column (no sample
    assigned later is none)."""
    if key == "assigned":
        return bool(value)
    return value not in (None, "")


def columns_for(rows):
    """The keys of the columns a table of ``rows`` shows: the base columns,
    then those optional columns for which some row has a value."""
    keys = [c[0] for c in COLUMNS]
    keys += [
        c[0]
        for c in OPTIONAL_COLUMNS
        if any(_filled(c[0], r.get(c[0])) for r in rows)
    ]
    return keys


def dissolving_rows(rows):
    """The rows of clusters whose stability is below
    :data:`..core.compare.DISSOLVING`."""
    return [
        r
        for r in rows
        if r.get("stability") is not None and r["stability"] < DISSOLVING
    ]


def _cell(key, row):
    value = row.get(key)
    if key == "id":
        return "-1 (noise)" if row["id"] == NOISE_ID else row["id"]
    if key == "score_mean":
        return _fmt(value)
    if key == "purity":
        return "" if value is None else f"{value:.0%}"
    if key == "stability":
        return stability_text(value)
    return "" if value is None else value


def stability_text(value):
    """A stability as the table shows it: ``0.91 stable``, ``0.42
    dissolving``, ``0.73``."""
    if value is None:
        return ""
    word = stability_word(value)
    return f"{value:.2f}" + ("" if word == "in between" else f" {word}")


def table_data(run_key, rows, selected, columns=None):
    """A table's content: one row per cluster (its id in a column the
    table does not show), the selected one marked, the columns it shows
    (default :func:`columns_for` the rows) and the run."""
    columns = columns or columns_for(rows)
    out = []
    selected_rows = []
    for i, r in enumerate(rows):
        if r["id"] == selected:
            selected_rows.append(i)
        out.append([_cell(k, r) for k in columns] + [r["id"]])
    return {
        "columns": list(columns) + [ID_COLUMN],
        "rows": out,
        "selected_rows": selected_rows,
        "run_key": run_key,
    }


def shown_columns(state):
    """The keys of the columns the panel's table shows."""
    table = state.get(HEAD) or {}
    keys = [k for k in table.get("columns") or [] if k != ID_COLUMN]
    return keys or [c[0] for c in COLUMNS]


def plot_data(run_key, rows, selected):
    """The sizes plot's traces: one bar per cluster, carrying its cluster
    id (``ids``, ``customdata``) and the run (``meta``); the selected one
    and noise in their own colours. No trace without rows."""
    if not rows:
        return []
    colors = [
        (
            _BAR_SELECTED
            if r["id"] == selected
            else _BAR_NOISE if r["id"] == NOISE_ID else _BAR
        )
        for r in rows
    ]
    hover = [
        plot_text(cluster_name(r["id"], r.get("label")))
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
            "customdata": [r["id"] for r in rows],
            "meta": {"run_key": run_key},
            "text": hover,
            "hoverinfo": "text",
            "textposition": "none",
            "marker": {"color": colors},
        }
    ]


def panel_content(run_key, rows, selected):
    """What the panel shows of a run's clusters, by state key: the rows
    down to the selected cluster (all rows when none is), the rows after
    it, and the plot."""
    ids = [r["id"] for r in rows]
    split = ids.index(selected) + 1 if selected in ids else len(rows)
    columns = columns_for(rows)
    return {
        HEAD: table_data(run_key, rows[:split], selected, columns),
        TAIL: table_data(run_key, rows[split:], None, columns),
        PLOT: plot_data(run_key, rows, selected),
    }


def empty_content():
    """The panel's content when it shows no run."""
    return panel_content(None, [], None)


def table_rows(table):
    """The rows of a table's content as dicts (the shown columns and the
    cluster id)."""
    if not isinstance(table, dict):
        return []
    columns = table.get("columns") or []
    return [dict(zip(columns, r)) for r in table.get("rows") or []]


def row_cluster(table, row, run_key):
    """The cluster id of row ``row`` of a table's content as the App
    showed it; ``None`` when the table shows another run or has no such
    row (the App showed something out of date)."""
    if not isinstance(table, dict) or table.get("run_key") != run_key:
        return None
    rows = table_rows(table)
    if not 0 <= row < len(rows):
        return None
    cid = rows[row].get(ID_COLUMN)
    return None if cid is None else str(cid)


def shown_rows(state):
    """Every row the panel's state shows, in table order."""
    return table_rows(state.get(HEAD)) + table_rows(state.get(TAIL))


def merge_targets(state, cid):
    """The rows of the clusters that cluster ``cid`` can merge into: none
    for noise."""
    if cid == NOISE_ID:
        return []
    return [
        r for r in shown_rows(state) if r[ID_COLUMN] not in (cid, NOISE_ID)
    ]


def plot_layout(base, traces):
    """The sizes plot's layout for ``traces``: the axes fitted to this
    run's bars, never kept from another run."""
    layout = dict(base)
    ys = [y for t in traces or [] for y in t.get("y") or []]
    xs = [x for t in traces or [] for x in t.get("x") or []]
    top = max(ys) if ys else 1
    layout["yaxis"] = dict(
        base.get("yaxis") or {}, range=[0, top * 1.08], autorange=False
    )
    layout["xaxis"] = dict(
        base.get("xaxis") or {}, categoryorder="array", categoryarray=xs
    )
    return layout


def edit_key(cid):
    """The state key of the inputs of the selected cluster ``cid``: one
    key per cluster, so a new selection starts with empty inputs."""
    return "edit_" + ("noise" if cid == NOISE_ID else str(cid))
