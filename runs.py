"""Storage of clustering runs: the only module that registers, saves, loads,
renames and deletes FiftyOne runs.

A clustering run is a FiftyOne run (``dataset.list_runs()``) whose config
records the method, its parameters, the preprocessing, the fields it wrote
and the plugin version, and whose results hold what is small: per-cluster
sizes, centroids, representatives and labels, and quality metrics. Runs are
registered only after their computation has succeeded.
"""

import logging
import os
import threading
from datetime import timezone

import yaml


from .data import InputError, Rollback, remove_fields

logger = logging.getLogger(__name__)

_MANIFEST = os.path.join(os.path.dirname(__file__), "fiftyone.yml")


def _manifest():
    with open(_MANIFEST) as f:
        return yaml.safe_load(f)


# The plugin's name, as its manifest declares it
PLUGIN = _manifest()["name"]

# Results are replaced by delete-then-write in GridFS: a read that overlaps a
# write in another thread of the same process (the App server) can fail
_RESULTS_LOCK = threading.RLock()
KIND = "clustering"
# Where a run's results keep the claims of the last calls that saved them
COMMITS, KEEP_COMMITS = "commits", 20
# What each kind of run is called in messages
KIND_NAMES = {"clustering": "clustering run", "duplicates": "duplicates run"}


def plugin_version():
    """The plugin's version, from its ``fiftyone.yml``."""
    return str(_manifest()["version"])


def list_runs(samples, kind=KIND):
    """The keys of the runs of ``kind`` (default: clustering runs) of a
    collection's dataset."""
    return samples._dataset.list_runs(plugin=PLUGIN, kind=kind)


def check_new_key(samples, run_key):
    """Raises an :class:`InputError` if ``run_key`` is invalid or taken."""
    if (
        not isinstance(run_key, str)
        or not run_key.isidentifier()
        or run_key.startswith("_")
    ):
        raise InputError(
            f"Run key {run_key!r} is not valid: use letters, digits and "
            "underscores, starting with a letter"
        )
    if run_key in samples._dataset.list_runs():
        raise InputError(
            f"Run key '{run_key}' is already taken on dataset "
            f"'{samples._dataset.name}'; choose another, or delete or "
            "rename that run first"
        )


def check_key(samples, run_key, kind=KIND):
    """Raises an :class:`InputError` if there is no run ``run_key`` of
    ``kind``."""
    runs = list_runs(samples, kind)
    if run_key not in runs:
        have = ", ".join(runs) if runs else "none"
        what = KIND_NAMES.get(kind, f"{kind} run")
        raise InputError(
            f"Dataset '{samples._dataset.name}' has no {what} "
            f"'{run_key}'. {what.capitalize()}s: {have}"
        )


def register(samples, run_key, config, results, kind=KIND):
    """Registers a finished run of ``kind`` on ``samples`` (a dataset or
    view) with its config dict and results dict."""
    dataset = samples._dataset
    run_config = dataset.init_run(
        plugin=PLUGIN,
        kind=kind,
        plugin_version=plugin_version(),
        **config,
    )
    with Rollback() as undo:
        samples.register_run(run_key, run_config)
        undo.push(dataset.delete_run, run_key)
        save_results(samples, run_key, results)


def get_config(samples, run_key, kind=KIND):
    """The stored config of a run, as a dict."""
    check_key(samples, run_key, kind)
    info = samples._dataset.get_run_info(run_key)
    config = info.config.serialize()
    config.pop("cls", None)
    config.pop("type", None)
    return config


def cluster_field(samples, run_key, config=None):
    """The cluster field of run ``run_key``; raises an :class:`InputError`
    if the field is gone from the dataset (renamed or deleted by hand)."""
    config = config or get_config(samples, run_key)
    field = config["cluster_field"]
    if field not in samples._dataset.get_field_schema():
        raise InputError(
            f"The cluster field '{field}' of run '{run_key}' is no longer on "
            f"dataset '{samples._dataset.name}' (renamed or deleted?); "
            f"rename it back to '{field}', or recompute the run"
        )
    return field


def update_config(samples, run_key, **updates):
    """Updates entries of a run's stored config."""
    dataset = samples._dataset
    info = dataset.get_run_info(run_key)
    config = info.config
    for key, value in updates.items():
        setattr(config, key, value)
    dataset.update_run_config(run_key, config)


def get_info(samples, run_key, kind=KIND):
    """Config, timestamp and versions of a run, as a JSON-ready dict."""
    check_key(samples, run_key, kind)
    info = samples._dataset.get_run_info(run_key)
    config = get_config(samples, run_key, kind)
    return {
        "run_key": run_key,
        "timestamp": _with_zone(info.timestamp),
        "fiftyone_version": info.version,
        "plugin_version": config.get("plugin_version"),
        "config": config,
    }


def _with_zone(timestamp):
    """An ISO 8601 string with the time zone (FiftyOne stores UTC)."""
    if timestamp is None:
        return None
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=timezone.utc)
    return timestamp.isoformat()


def load_results(samples, run_key, kind=KIND):
    """A run's results, as a dict."""
    check_key(samples, run_key, kind)
    with _RESULTS_LOCK:
        results = samples._dataset.load_run_results(
            run_key, cache=False, load_view=False
        )
    return {} if results is None else dict(results.data)


def save_results(samples, run_key, data, token=None):
    """Replaces a run's results with the dict ``data``; ``token``, the
    claim of the call that saves them, is kept with them (the last
    :data:`KEEP_COMMITS`), so that a repair can tell that the call's
    record was saved (:func:`committed`)."""
    if token:
        kept = (data.get(COMMITS) or [])[-(KEEP_COMMITS - 1) :]
        data = dict(data, **{COMMITS: kept + [token]})
    dataset = samples._dataset
    results = dataset.init_run_results(run_key, data=data)
    with _RESULTS_LOCK:
        dataset.save_run_results(run_key, results, overwrite=True, cache=False)


def committed(dataset, run_key, token):
    """Whether run ``run_key``'s results were saved by the call that held
    claim ``token`` (see :func:`save_results`)."""
    if not run_key or run_key not in dataset.list_runs():
        return False
    with _RESULTS_LOCK:
        results = dataset.load_run_results(
            run_key, cache=False, load_view=False
        )
    data = {} if results is None else results.data
    return token in (data.get(COMMITS) or [])


def rename(samples, run_key, new_run_key, kind=KIND):
    """Renames a run; the fields it wrote keep their names, its saved views
    and those of its actions are renamed with it."""
    check_key(samples, run_key, kind)
    check_new_key(samples, new_run_key)
    dataset = samples._dataset
    dataset.rename_run(run_key, new_run_key)
    results = load_results(samples, new_run_key, kind)
    changed = False
    records = list((results.get("actions") or {}).values())
    if results.get("saved_views"):
        records.append(results)
    for record in records:
        views = []
        for name in record.get("saved_views") or []:
            new = name.replace(run_key, new_run_key, 1)
            if dataset.has_saved_view(name) and not dataset.has_saved_view(
                new
            ):
                dataset.update_saved_view_info(name, {"name": new})
                name = new
            views.append(name)
        changed |= views != record.get("saved_views", [])
        record["saved_views"] = views
    if changed:
        save_results(samples, new_run_key, results)
    return results


# --------------------------------------------------------------------------
# Actions: what curation calls (label audit, outliers, subsets, ...) store
# with a run. Each action's record (config, summary, the fields it wrote,
# its saved views) sits in the run's results under ``actions``; its fields
# are listed in the run's ``fields``, so they are deleted with the run.
# --------------------------------------------------------------------------


def get_actions(samples, run_key):
    """The action records of a run: ``{action name: record}``."""
    return dict(load_results(samples, run_key).get("actions") or {})


def save_action(samples, run_key, name, record, token=None):
    """Stores the record of action ``name`` (a dict with at least
    ``fields`` and ``saved_views``) with a run, replacing an earlier one:
    its fields are listed with the run's first, so that a crash between the
    two writes leaves nothing the run would not delete. ``token``: the
    claim of the call (see :func:`save_results`)."""
    config = get_config(samples, run_key)
    fields = list(config.get("fields", []))
    fields += [f for f in record.get("fields", []) if f not in fields]
    update_config(samples, run_key, fields=fields)
    results = load_results(samples, run_key)
    results.setdefault("actions", {})[name] = record
    save_results(samples, run_key, results, token)


def drop_action(samples, run_key, name):
    """Forgets action ``name`` of a run and deletes its saved views; returns
    its record (``None`` if there was none). Its fields stay on the samples
    for the caller to remove (they are no longer the run's)."""
    results = load_results(samples, run_key)
    record = (results.get("actions") or {}).pop(name, None)
    if record is None:
        return None
    save_results(samples, run_key, results)
    config = get_config(samples, run_key)
    gone = set(record.get("fields", []))
    fields = [f for f in config.get("fields", []) if f not in gone]
    update_config(samples, run_key, fields=fields)
    _delete_views(samples._dataset, record)
    return record


def _delete_views(dataset, record):
    for view in record.get("saved_views") or []:
        if dataset.has_saved_view(view):
            dataset.delete_saved_view(view)


def owned_fields(config):
    """The sample fields a run wrote, from its config."""
    return [f for f in config.get("fields", []) if f]


def delete(samples, run_key, kind=KIND):
    """Deletes a run, the sample fields it and its actions wrote, their
    saved views and the projections made from it (brain runs in its
    ``projection_keys``, which show its clusters)."""
    config = get_config(samples, run_key, kind)
    dataset = samples._dataset
    results = load_results(samples, run_key, kind)
    for record in (results.get("actions") or {}).values():
        _delete_views(dataset, record)
    _delete_views(dataset, results)
    remove_fields(dataset, owned_fields(config))
    brain_keys = set(dataset.list_brain_runs())
    for key in config.get("projection_keys") or []:
        if key in brain_keys:
            dataset.delete_brain_run(key)
    dataset.delete_run(run_key)
