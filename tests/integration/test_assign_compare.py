"""Clusters that keep up with the dataset, through the API on a real
database: assigning new samples, comparing runs, stability."""

import signal

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

import fiftyone as fo

import harness


def _digits(name, seed=0):
    d = load_digits()
    X = StandardScaler().fit_transform(d.data).astype(np.float32)
    rng = np.random.default_rng(seed)
    split = np.where(rng.random(len(X)) < 0.8, "train", "new")
    ds = fo.Dataset(name)
    ds.add_samples(
        [
            fo.Sample(filepath=f"/x/{i}.png", digit=int(t), tags=[s])
            for i, (t, s) in enumerate(zip(d.target, split))
        ]
    )
    ds.set_values("emb", list(X))
    return ds


def _state(ds):
    ds.reload()
    runs = {k: ds.get_run_info(k).config.serialize() for k in ds.list_runs()}
    values = {
        f: ds.values(f)
        for f in ds.get_field_schema()
        if f.endswith(("_cluster", "_novel", "_distance", "_strength"))
    }
    return sorted(ds.get_field_schema()), runs, values


def _shares(ds, field):
    """Share of fitted / assigned samples in a cluster of their own digit
    (each cluster named by its fitted members' majority digit)."""
    fit = ds.match_tags("train")
    cl, dg = fit.values(field), fit.values("digit")
    major = {}
    for c in set(cl) - {"-1"}:
        major[c] = np.bincount([d for x, d in zip(cl, dg) if x == c]).argmax()
    new = ds.match_tags("new")
    share = lambda v: np.mean(
        [
            major.get(c, -1) == d
            for c, d in zip(v.values(field), v.values("digit"))
        ]
    )
    return share(fit), share(new)


@pytest.mark.parametrize(
    "method,params", [("kmeans", dict(kmeans__n_clusters=10)), ("hdbscan", {})]
)
def test_assign_held_out_digits(api, dataset_name, method, params):
    ds = _digits(dataset_name)
    train = ds.match_tags("train")
    api.compute_clusters(train, "r", "emb", method=method, **params)
    before = dict(zip(*train.values(["id", "r_cluster"])))
    out = api.assign_clusters(ds, "r")
    new = ds.match_tags("new")
    assert out["n_assigned"] == len(new)
    assert None not in new.values("r_cluster")
    # existing ids unchanged
    assert dict(zip(*train.values(["id", "r_cluster"]))) == before
    assert set(train.values("r_novel")) == {None}
    assert set(new.values("r_novel")) <= {True, False}
    fit_share, new_share = _shares(ds, "r_cluster")
    print(method, fit_share, new_share, out["n_novel"])
    assert new_share >= fit_share - 0.02
    info = api.get_clustering_run_info(ds, "r")
    assert info["assignments"][0]["n_assigned"] == len(new)
    assert any("assigned later" in line for line in info["summary"])
    assert "r_novel" in info["config"]["fields"]
    # nothing new left: a clear error, nothing written
    state = _state(ds)
    with pytest.raises(api.InputError, match="holds no sample"):
        api.assign_clusters(ds, "r")
    assert _state(ds) == state
    # deleting the run deletes the novelty flag too
    api.delete_clustering_run(ds, "r")
    ds.reload()
    assert not ds.has_sample_field("r_novel")


def _tight(name, rng):
    """Tight clusters, as image embeddings form; 80% fitted."""
    centres = rng.normal(size=(10, 64)).astype(np.float32)
    X = centres[rng.integers(0, 10, 1000)]
    X += 0.3 * rng.normal(size=X.shape).astype(np.float32)
    ds = fo.Dataset(name)
    ds.add_samples(
        [
            fo.Sample(filepath=f"/x/{i}.png", tags=["new"] if i % 5 else [])
            for i in range(1000)
        ]
    )
    ds.set_values("emb", list(X))
    return ds


def test_assign_follows_merges_and_flags_novel(api, dataset_name):
    rng = np.random.default_rng(0)
    ds = _tight(dataset_name, rng)
    train = ds.match_tags("new", bool=False)
    api.compute_clusters(
        train, "k", "emb", method="kmeans", kmeans__n_clusters=10
    )
    api.merge_clusters(ds, "k", ["1", "2"], into="1")
    far = ds.match_tags("new").limit(5)
    far.set_values("emb", list(rng.normal(size=(5, 64)).astype(np.float32)))
    out = api.assign_clusters(ds, "k")
    assert "2" not in set(ds.values("k_cluster"))
    assert set(far.values("k_novel")) == {True}
    assert set(far.values("k_cluster")) == {"-1"}
    assert 5 <= out["n_novel"] <= 20


def test_assign_refusals_write_nothing(api, dataset_name, runs):
    ds = _digits(dataset_name)
    train = ds.match_tags("train")
    api.compute_clusters(
        train, "k", "emb", method="kmeans", kmeans__n_clusters=10
    )
    state = _state(ds)
    with pytest.raises(api.InputError, match="has no clustering run"):
        api.assign_clusters(ds, "nope")
    # missing embeddings
    missing = ds.match_tags("new").limit(3)
    missing.set_values("emb", [None] * 3)
    state = _state(ds)
    with pytest.raises(api.InputError, match="have no value in 'emb'"):
        api.assign_clusters(ds, "k")
    assert _state(ds) == state
    # another dimension
    missing.set_values("emb", [np.zeros(32, np.float32)] * 3)
    state = _state(ds)
    with pytest.raises(api.InputError, match="32 dimensions"):
        api.assign_clusters(ds.match_tags("new").limit(3), "k")
    assert _state(ds) == state
    with pytest.raises(api.InputError, match="novelty_factor"):
        api.assign_clusters(ds, "k", novelty_factor=0)
    # a run stored before this feature
    results = runs.load_results(ds, "k")
    results.pop("assign_model")
    runs.save_results(ds, "k", results)
    state = _state(ds)
    with pytest.raises(api.InputError, match="recompute"):
        api.assign_clusters(ds, "k")
    assert _state(ds) == state


def test_recluster_when_too_many_are_novel(api, dataset_name):
    rng = np.random.default_rng(0)
    ds = _tight(dataset_name, rng)
    train = ds.match_tags("new", bool=False)
    api.compute_clusters(
        train, "k", "emb", method="kmeans", kmeans__n_clusters=10
    )
    new = ds.match_tags("new")
    new.set_values("emb", list(rng.normal(size=(len(new), 64))))
    out = api.assign_clusters(ds, "k", recluster_above=0.5)
    assert out["reclustered"]["run_key"] == "k_reclustered"
    assert "computed again" in out["summary"][0]
    assert set(new.values("k_cluster")) == {None}
    assert len(ds.exists("k_reclustered_cluster")) == len(ds)


def test_compare_runs(api, dataset_name):
    ds = _digits(dataset_name)
    for key in ("a", "b"):
        api.compute_clusters(
            ds, key, "emb", method="kmeans", kmeans__n_clusters=10
        )
    same = api.compare_clustering_runs(ds, "a", "a_copy" if False else "b")
    assert same["ari"] == pytest.approx(1.0)
    assert {c["verdict"] for c in same["clusters"]} == {"kept"}
    api.merge_clusters(ds, "b", ["3", "7"], into="3")
    out = api.compare_clustering_runs(ds, "a", "b")
    merged = [e for e in out["events"] if e["verdict"] == "merged"]
    assert len(merged) == 1
    assert sorted(merged[0]["a"]) == ["3", "7"] and merged[0]["b"] == ["3"]
    assert 0 < out["ari"] < 1 and 0 < out["ami"] < 1
    moved = api.moved_samples(ds, "a", "b", "7", "3")
    assert len(moved) == next(
        f["count"] for f in out["flows"] if f["a"] == "7" and f["b"] == "3"
    )
    # refusals
    with pytest.raises(api.InputError, match="two different runs"):
        api.compare_clustering_runs(ds, "a", "a")
    api.compute_clusters(
        ds.limit(900), "c", "emb", method="kmeans", kmeans__n_clusters=5
    )
    state = _state(ds)
    with pytest.raises(api.InputError, match="no sample in common"):
        api.compare_clustering_runs(ds.skip(900), "a", "c")
    assert _state(ds) == state


def test_stability_option(api, dataset_name):
    rng = np.random.default_rng(0)
    centres = np.eye(10)[:3] * 20
    X = np.vstack([c + rng.normal(size=(200, 10)) for c in centres])
    ds = fo.Dataset(dataset_name)
    ds.add_samples([fo.Sample(filepath=f"/x/{i}.png") for i in range(600)])
    ds.set_values("emb", list(X.astype(np.float32)))
    api.compute_clusters(
        ds,
        "k3",
        "emb",
        method="kmeans",
        normalize=False,
        kmeans__n_clusters=3,
        stability_resamples=10,
    )
    info = api.get_clustering_run_info(ds, "k3")
    values = info["stability"]["clusters"]
    assert len(values) == 3 and min(values.values()) > 0.85
    assert any("stability" in line for line in info["summary"])
    api.compute_clusters(
        ds,
        "k4",
        "emb",
        method="kmeans",
        normalize=False,
        kmeans__n_clusters=4,
        stability_resamples=10,
    )
    values = api.get_clustering_run_info(ds, "k4")["stability"]["clusters"]
    assert min(values.values()) < 0.6
    table = api.get_cluster_table(ds, "k4")
    assert all("stability" in row for row in table["clusters"])
    with pytest.raises(api.InputError, match="stability_resamples"):
        api.compute_clusters(
            ds, "bad", "emb", method="kmeans", stability_resamples=-1
        )


# Runs assign_clusters on a dataset in a fresh process, killed (SIGKILL)
# at a moment of its write:
#   kill_after_merge    once the server-side merge of the values returned
#   kill_before_record  once the values are in place and declared, before
#                       the run's record of the call is saved
#   kill_after_record   once the record is saved, before the claim is done
ASSIGN_RUNNER = harness.PLUGIN_SCRIPT + r"""
assign = importlib.import_module(M + ".api.assign")
name, key, fault = sys.argv[1], sys.argv[2], sys.argv[3]
if fault == "kill_after_merge":
    die_after(data, "_merge_values")
elif fault == "kill_before_record":
    die_instead(assign, "_save_record")
elif fault == "kill_after_record":
    die_after(assign, "_save_record")
out = api.assign_clusters(fo.load_dataset(name), key)
print("RESULT " + json.dumps({"n": out["n_assigned"]}))
"""


def _raw(ds):
    """The raw documents, the full schema, the runs' results and the
    dataset's collections."""
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
    results = {
        k: dict(ds.load_run_results(k, cache=False).data)
        for k in ds.list_runs()
    }
    return schema, colls, results, docs


def _killed_assignment(api, dataset_name, test_env, fault):
    """The digits with run 'k' of the train samples, and an assignment of
    the new ones killed at ``fault`` in another process; returns the
    dataset and its raw state before the kill."""
    ds = _digits(dataset_name)
    ds.persistent = True  # the other process loads it
    api.compute_clusters(
        ds.match_tags("train"),
        "k",
        "emb",
        method="kmeans",
        kmeans__n_clusters=10,
    )
    before = _raw(ds)
    harness.run_script(
        ASSIGN_RUNNER,
        ds.name,
        "k",
        fault,
        env=test_env,
        expect=-signal.SIGKILL,
    )
    return ds, before


@pytest.mark.parametrize("fault", ["kill_after_merge", "kill_before_record"])
def test_a_killed_assignment_is_repaired(api, dataset_name, test_env, fault):
    """A process killed while it writes new samples' ids leaves a claim;
    the repair unsets what it wrote on those samples only, and the next
    call assigns them."""
    ds, before = _killed_assignment(api, dataset_name, test_env, fault)
    ds.reload()
    n_new = len(ds.match_tags("new"))
    # the dead call wrote its values
    assert len(ds.exists("k_cluster")) == len(ds), fault
    repaired = api.repair_interrupted_runs(ds)
    assert len(repaired) == 1, repaired
    assert f"on the {n_new} samples it was writing" in repaired[0]
    assert _raw(ds) == before
    out = api.assign_clusters(ds, "k")
    assert out["n_assigned"] == n_new
    info = api.get_clustering_run_info(ds, "k")
    assert len(info["assignments"]) == 1


def test_an_assignment_killed_after_its_record_is_kept(
    api, dataset_name, test_env
):
    """Killed once the run's record of the call is saved: the call had
    finished, so the repair keeps its values and its record."""
    ds, _ = _killed_assignment(
        api, dataset_name, test_env, "kill_after_record"
    )
    ds.reload()
    written = _raw(ds)
    repaired = api.repair_interrupted_runs(ds)
    assert len(repaired) == 1 and "finished call" in repaired[0], repaired
    schema, colls, results, docs = _raw(ds)
    # the same values, schema and record; the write's temporary
    # collection dropped
    assert (schema, results, docs) == (written[0], written[2], written[3])
    assert colls == [c for c in written[1] if "_tmp_" not in c] != written[1]
    n_new = len(ds.match_tags("new"))
    assert len(ds.exists("k_cluster")) == len(ds)
    info = api.get_clustering_run_info(ds, "k")
    assert [a["n_assigned"] for a in info["assignments"]] == [n_new]
    with pytest.raises(api.InputError, match="holds no sample that run"):
        api.assign_clusters(ds, "k")
