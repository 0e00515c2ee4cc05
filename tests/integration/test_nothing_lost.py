"""Nothing lost, ever: concurrent runs, processes killed at each moment of a
write, reserved fields. Every run here is a real process; the faults are
real kills (SIGKILL) at the named moment."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fiftyone as fo
import fiftyone.core.odm as odm

import harness

CLAIMS = "curate_clustering_claims"

# Runs compute_clusters on a dataset in a fresh process, with a fault:
#   slow:<s>:<path>       the fit creates the file <path>, then sleeps <s>
#                         seconds (the run is under way)
#   kill_after_merge      SIGKILL once the server-side merge returned
#   kill_during_merge     SIGKILL while the server-side merge runs
#   kill_between_fields   SIGKILL after the first field was declared
#   kill_before_results   SIGKILL after the run was registered, before its
#                         results are saved
RUNNER = harness.PLUGIN_SCRIPT + r"""
methods = importlib.import_module(M + ".core.methods")
name, key, fault, kwargs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
kwargs = json.loads(kwargs)

if fault.startswith("slow:"):
    _, seconds, marker = fault.split(":", 2)
    real_fit = methods.KMeans._fit
    def slow_fit(self, X):
        open(marker, "w").close()
        time.sleep(float(seconds))
        return real_fit(self, X)
    methods.KMeans._fit = slow_fit
elif fault == "kill_after_merge":
    die_after(data, "_merge_values")
elif fault == "kill_during_merge":
    import pymongo.collection
    real_aggregate = pymongo.collection.Collection.aggregate
    def aggregate_and_die(self, pipeline, *a, **k):
        if "_tmp_" in self.name:
            threading.Thread(
                target=real_aggregate, args=(self, pipeline) + a, kwargs=k,
                daemon=True,
            ).start()
            time.sleep(0.05)
            die()
        return real_aggregate(self, pipeline, *a, **k)
    pymongo.collection.Collection.aggregate = aggregate_and_die
elif fault == "kill_between_fields":
    real_add = fo.Dataset.add_sample_field
    calls = []
    def add_then_die(self, *a, **k):
        out = real_add(self, *a, **k)
        calls.append(1)
        if len(calls) == 1:
            die()
        return out
    fo.Dataset.add_sample_field = add_then_die
elif fault == "kill_before_results":
    die_instead(runs, "save_results")

ds = fo.load_dataset(name)
try:
    out = api.compute_clusters(ds, key, "emb", method="kmeans", **kwargs)
    print("RESULT " + json.dumps({"ok": out["n_clusters"]}))
except Exception as e:
    print("RESULT " + json.dumps({"error": str(e)}))
"""


def blobs(n, d=16, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 6
    y = rng.integers(0, k, n)
    return (centers[y] + rng.normal(size=(n, d))).astype(np.float32)


def make_dataset(name, n):
    ds = fo.Dataset(name)
    ds.add_samples(
        [fo.Sample(filepath=f"/nonexistent/{i}.png") for i in range(n)]
    )
    ds.set_values("emb", list(blobs(n)))
    ds.persistent = True  # other processes load it
    return ds


def raw_state(ds):
    """Everything a dead run must not leave behind: the raw documents,
    the full schema (private fields too), the runs and the collections."""
    ds.reload()
    docs = list(
        ds._sample_collection.find({}, {"last_modified_at": 0}).sort("_id")
    )
    schema = sorted(ds.get_field_schema(include_private=True))
    colls = sorted(
        c
        for c in ds._sample_collection.database.list_collection_names()
        if c.startswith(ds._sample_collection_name)
    )
    return schema, sorted(ds.list_runs()), colls, docs


def start(test_env, ds, key, fault="none", **kwargs):
    kwargs.setdefault("kmeans__n_clusters", 3)
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            RUNNER,
            ds.name,
            key,
            fault,
            json.dumps(kwargs),
        ],
        env=test_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(proc, timeout=180):
    out, err = proc.communicate(timeout=timeout)
    lines = [l for l in out.splitlines() if l.startswith("RESULT ")]
    assert lines, f"exit {proc.returncode}\n{err[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


def wait_for_file(path, timeout=120):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert time.time() < deadline, "the first run never started its fit"
        time.sleep(0.1)


def wait_for_claim(ds, key, timeout=120):
    coll = odm.get_db_conn()[CLAIMS]
    deadline = time.time() + timeout
    while time.time() < deadline:
        if coll.find_one({"run_key": key, "dataset_id": str(ds._doc.id)}):
            return
        time.sleep(0.1)
    raise AssertionError(f"run '{key}' never claimed its names")


@pytest.fixture
def ds(dataset_name, plugin):
    yield make_dataset(dataset_name, 3000)


def test_two_processes_with_one_run_key(ds, api, test_env, tmp_path):
    marker = tmp_path / "fitting"
    first = start(test_env, ds, "same", f"slow:6:{marker}")
    wait_for_file(marker)
    second = start(test_env, ds, "same")
    out2 = result(second)
    out1 = result(first)
    assert out1 == {"ok": 3}, out1
    assert "is being written by another run" in out2["error"], out2
    # the winner's run and fields are all there
    ds.reload()
    assert ds.list_runs() == ["same"]
    assert len(ds.exists("same_cluster")) == len(ds)
    assert (
        api.get_clustering_run_info(ds, "same")["statistics"]["n_clusters"]
        == 3
    )


def test_two_runs_with_one_cluster_field(ds, api, test_env, tmp_path):
    marker = tmp_path / "fitting"
    first = start(
        test_env, ds, "a", f"slow:6:{marker}", cluster_field="shared"
    )
    wait_for_file(marker)
    second = start(test_env, ds, "b", cluster_field="shared")
    out2 = result(second)
    out1 = result(first)
    assert out1 == {"ok": 3}
    assert "Field 'shared' is being written by another run ('a'" in (
        out2["error"]
    )
    ds.reload()
    assert ds.list_runs() == ["a"]
    config = api.get_clustering_run_info(ds, "a")["config"]
    assert config["cluster_field"] == "shared"
    api.delete_clustering_run(ds, "a")
    assert "shared" not in ds.get_field_schema()


@pytest.mark.parametrize(
    "fault",
    [
        "kill_during_merge",
        "kill_after_merge",
        "kill_between_fields",
        "kill_before_results",
    ],
)
def test_a_killed_run_is_repaired_by_the_next_call(
    dataset_name, plugin, api, test_env, fault
):
    # a merge of 30,000 samples takes long enough to be killed midway
    ds = make_dataset(dataset_name, 30000 if "during" in fault else 3000)
    before = raw_state(ds)
    proc = start(test_env, ds, "r", fault)
    proc.communicate(timeout=180)
    assert proc.returncode == -signal.SIGKILL
    wait_for_claim(ds, "r", timeout=1)  # the dead run's claim is left

    # a cleanup step puts the dataset back exactly as it was
    repaired = api.repair_interrupted_runs(ds)
    assert len(repaired) == 1 and "Repaired run 'r'" in repaired[0]
    assert raw_state(ds) == before
    assert api.repair_interrupted_runs(ds) == []

    # and the same run key works again
    out = api.compute_clusters(ds, "r", "emb", method="kmeans")
    assert out["repaired"] == []
    assert len(ds.exists("r_cluster")) == len(ds)


def test_the_next_run_repairs_by_itself(ds, api, test_env):
    proc = start(test_env, ds, "r", "kill_before_results")
    proc.communicate(timeout=180)
    assert proc.returncode == -signal.SIGKILL
    out = api.compute_clusters(
        ds, "r", "emb", method="kmeans", kmeans__n_clusters=3
    )
    assert len(out["repaired"]) == 1
    assert "phase 'registering'" in out["repaired"][0]
    info = api.get_clustering_run_info(ds, "r")
    assert info["statistics"]["n_clusters"] == 3


# --- reserved and foreign fields ---------------------------------------------


@pytest.mark.parametrize(
    "field", ["_media_type", "_dataset_id", "_rand", "id", "filepath", "_x"]
)
def test_reserved_fields_are_refused(ds, api, field):
    before = raw_state(ds)
    with pytest.raises(api.InputError, match="reserved by FiftyOne"):
        api.compute_clusters(
            ds, "r", "emb", method="kmeans", cluster_field=field
        )
    assert raw_state(ds) == before


def test_label_field_cannot_be_a_reserved_field(ds, api):
    api.compute_clusters(ds, "r", "emb", method="kmeans", kmeans__n_clusters=3)
    before = raw_state(ds)
    with pytest.raises(api.InputError, match="reserved by FiftyOne"):
        api.label_clusters(
            ds, "r", label_field="_media_type", api_key="x", max_clusters=1
        )
    assert raw_state(ds) == before
    api.delete_clustering_run(ds, "r")
    assert ds.first().media_type == "image"


@pytest.mark.parametrize("key", ["_", "__", "_private"])
def test_run_keys_starting_with_an_underscore_are_refused(ds, api, key):
    before = raw_state(ds)
    with pytest.raises(api.InputError, match="starting with a letter"):
        api.compute_clusters(ds, key, "emb", method="kmeans")
    assert raw_state(ds) == before


@pytest.mark.parametrize("kind", ["distance", "strength"])
def test_cluster_field_cannot_be_the_score_field(ds, api, kind):
    before = raw_state(ds)
    method = "hdbscan" if kind == "strength" else "kmeans"
    with pytest.raises(api.InputError, match="field of the run's"):
        api.compute_clusters(
            ds, "r", "emb", method=method, cluster_field=f"r_{kind}"
        )
    assert raw_state(ds) == before
