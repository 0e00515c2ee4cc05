"""A stand-in for the App driving the cluster explorer panel, and the small
datasets its tests use.

Every event is a real execution of the panel operator through FiftyOne's
operator executor, with the panel's state sent along (``panel_state``);
the operations the panel triggers (state and data patches, view changes,
prompts, notifications) are applied as the App applies them.

Imports fiftyone: loaded by ``tests/integration/conftest.py`` once the
test database is up."""

import copy

import numpy as np
import pydash

import fiftyone as fo
import fiftyone.operators as foo

URI = "@curate/clustering/cluster_explorer"
NOISE = "-1"


# ----------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------


def blobs(sizes=(40, 25, 15), d=8, seed=0, outliers=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(sizes), d)) * 8
    parts = [c + rng.normal(size=(n, d)) for c, n in zip(centers, sizes)]
    if outliers:
        parts.append(rng.uniform(-30, 30, size=(outliers, d)))
    return np.concatenate(parts).astype(np.float32)


def make_dataset(name, X):
    ds = fo.Dataset(name)
    ds.add_samples(
        [fo.Sample(filepath=f"/nonexistent/{i}.png") for i in range(len(X))]
    )
    ds.set_values("emb", list(X))
    return ds


def sizes_by_id(ds, field):
    return ds.count_values(field)


def by_size(ds, field="km_cluster"):
    """Cluster ids, largest first."""
    sizes = ds.count_values(field)
    return sorted(sizes, key=lambda c: -sizes[c])


def snapshot(ds):
    ds.reload()
    schema = {k: type(v).__name__ for k, v in ds.get_field_schema().items()}
    docs = list(
        ds._sample_collection.find({}, {"last_modified_at": 0}).sort("_id")
    )
    runs = {k: ds.get_run_info(k).config.serialize() for k in ds.list_runs()}
    results = {
        k: dict(ds.load_run_results(k, cache=False).data)
        for k in ds.list_runs()
    }
    return schema, docs, runs, results


# ----------------------------------------------------------------------
# A stand-in for the App's side of the panel protocol
# ----------------------------------------------------------------------


def lodash_merge(old, new):
    """``lodash.merge`` of one value into another, as the App combines a
    panel's state and data: dicts key by key, lists index by index (a
    shorter list keeps the old one's tail), anything else replaced."""
    if isinstance(new, dict):
        out = copy.deepcopy(old) if isinstance(old, dict) else {}
        for k, v in new.items():
            out[k] = lodash_merge(out.get(k), v)
        return out
    if isinstance(new, list):
        out = copy.deepcopy(old) if isinstance(old, list) else []
        for i, v in enumerate(new):
            if i < len(out):
                out[i] = lodash_merge(out[i], v)
            else:
                out.append(lodash_merge(None, v))
        return out
    return copy.deepcopy(new)


def merge_arrays_replaced(old, new):
    """The App's merge of an input change into a panel's state: dicts key
    by key, lists and anything else replaced."""
    if isinstance(new, dict):
        out = copy.deepcopy(old) if isinstance(old, dict) else {}
        for k, v in new.items():
            out[k] = merge_arrays_replaced(out.get(k), v)
        return out
    return copy.deepcopy(new)


class App:
    """Sends panel events as the App does and applies what they trigger.

    The App calls ``<panel uri>#<method>`` with ``panel_id``,
    ``panel_state`` and the event's own params (FiftyOne turns the fragment
    into the ``__method__`` param); the panel answers with triggered
    operations that patch its state and data, show its rendered schema,
    set the App's view, open operator prompts or notify.

    Like FiftyOne 1.22's App, it shows ``lodash.merge(state, data)``
    (:meth:`display`), and an input change (:meth:`type`) copies everything
    shown into the state.
    """

    def __init__(self, dataset):
        self.dataset = dataset
        self.view = dataset.view()
        self.state = {}
        self.data = {}
        self.schema = None
        self.prompts = []
        self.notifications = []
        self.view_changes = 0
        self.reloads = 0
        # Whether the App sends on_change_view with the panel state it
        # held when the view changed, before the patches that followed
        # set_view (as a busy App does); else with the state after them
        self.early_view_events = False

    def call(self, method, _panel_state=None, **params):
        state = self.state if _panel_state is None else _panel_state
        params = dict(
            params,
            __method__=method,
            panel_id="explorer-1",
            panel_state=copy.deepcopy(state),
        )
        result = foo.execute_operator(
            URI,
            ctx={
                "dataset": self.dataset,
                "view": self.view,
                "params": params,
            },
        )
        requests = result.to_json()["executor"]["requests"]
        view_changed = False
        held = None
        for req in requests:
            view_changed |= self._apply(req["operator_uri"], req["params"])
            if view_changed and held is None:
                held = copy.deepcopy(self.state)
        if view_changed:
            # The App tells the panel that its view changed
            self.view_changes += 1
            early = held if self.early_view_events else None
            self.call("on_change_view", _panel_state=early)
        return requests

    def _apply(self, op, params):
        if op == "patch_panel_state":
            for k, v in params["state"].items():
                pydash.set_(self.state, k, copy.deepcopy(v))
        elif op == "patch_panel_data":
            for k, v in params["data"].items():
                pydash.set_(self.data, k, copy.deepcopy(v))
        elif op == "clear_panel_state":
            self.state = {}
        elif op == "clear_panel_data":
            self.data = {}
        elif op == "show_panel_output":
            self.schema = params["output"]
        elif op == "set_view":
            self.view = fo.DatasetView._build(self.dataset, params["view"])
            return True
        elif op == "clear_view":
            self.view = self.dataset.view()
            return True
        elif op == "prompt_user_for_operation":
            self.prompts.append(params)
        elif op == "notify":
            self.notifications.append(params)
        elif op in ("reload_samples", "reload_dataset"):
            self.reloads += 1
        else:
            raise AssertionError(f"Unexpected operation {op}: {params}")
        return False

    def display(self):
        """What the App shows: the panel's state merged with its data."""
        return lodash_merge(lodash_merge({}, self.state), self.data)

    def type(self, path, value):
        """The user types into an input: the App copies what it shows into
        the state, with the input's new value."""
        shown = self.display()
        pydash.set_(shown, path, value)
        self.state = merge_arrays_replaced(self.state, shown)

    def edit(self, cid, path, value):
        """Types into an input of the selected cluster ``cid``:
        ``rename.label``, ``tag.text`` or ``merge.into``."""
        key = "edit_" + ("noise" if cid == NOISE else cid)
        self.type(f"{key}.{path}", value)

    def reload_page(self):
        """A page reload: the App keeps the panel's state, not its data,
        and loads the panel again."""
        self.data = {}
        self.call("on_load")

    # Clicks --------------------------------------------------------------

    def click(self, *path):
        """Clicks the button at ``path`` of the rendered panel, with the
        params it carries."""
        view = self.prop(*path)["view"]
        method = view["operator"].split("#", 1)[1]
        return self.call(method, **(view.get("params") or {}))

    def click_row(self, row, table="clusters_table"):
        """Clicks the first cell of row ``row`` of a part of the table."""
        self.call(
            "on_table_click",
            row=row,
            column=0,
            path=table,
            event="on_click_cell",
        )

    def click_cluster(self, cid):
        """Clicks the row that shows cluster ``cid``."""
        for table in ("clusters_table", "clusters_after"):
            ids = [r["cluster_id"] for r in self.table_rows(table)]
            if cid in ids:
                return self.click_row(ids.index(cid), table)
        raise AssertionError(f"no row shows cluster {cid}")

    def click_bar(self, index):
        """Clicks bar ``index`` of the sizes plot, as Plotly reports it."""
        (trace,) = self.display()["sizes_plot"]
        point = {
            k: trace[k][index]
            for k in ("x", "y", "ids", "customdata")
            if k in trace
        }
        point["id"] = point.pop("ids", None)
        data = {k: v for k, v in trace.items() if k not in ("x", "y")}
        self.call(
            "on_plot_click",
            pointIndex=index,
            data=data,
            trace=trace.get("name"),
            **point,
        )

    # What the rendered panel shows -------------------------------------

    def prop(self, *path):
        node = self.schema
        for name in path:
            node = node["type"]["properties"][name]
        return node

    def has(self, *path):
        try:
            self.prop(*path)
            return True
        except (KeyError, TypeError):
            return False

    def table_rows(self, table="clusters_table"):
        """The rows one part of the table shows (with the cluster id of
        each row), or none when the panel does not show that part."""
        if not self.has(table):
            return []
        content = self.display().get(table) or {}
        columns = content.get("columns") or []
        return [dict(zip(columns, r)) for r in content.get("rows") or []]

    def rows(self):
        """Every row the table shows, in order."""
        return self.table_rows("clusters_table") + self.table_rows(
            "clusters_after"
        )

    def ids(self):
        return [r["cluster_id"] for r in self.rows()]

    def bars(self):
        """The sizes plot's trace as shown."""
        (trace,) = self.display()["sizes_plot"]
        return trace

    def selected(self):
        """The clusters the table and the plot show as selected."""
        rows = [
            self.table_rows("clusters_table")[i]["cluster_id"]
            for i in self.display()["clusters_table"]["selected_rows"]
        ]
        trace = self.bars()
        bars = [
            c
            for c, color in zip(trace["ids"], trace["marker"]["color"])
            if color == "#2c7be5"
        ]
        return rows, bars

    def edit_key(self):
        cid = self.state.get("cluster")
        return "edit_" + ("noise" if cid == NOISE else cid)

    def last_error(self):
        errors = [n for n in self.notifications if n["variant"] == "error"]
        return errors[-1]["message"] if errors else None

    def last_warning(self):
        warnings = [n for n in self.notifications if n["variant"] == "warning"]
        return warnings[-1]["message"] if warnings else None
