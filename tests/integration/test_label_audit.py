"""Label audit and outlier scores through the API on a real database:
what they write, that the run owns it, and that every bad input is refused
with a clear message before anything is written."""

import importlib
import signal

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler, normalize

import fiftyone as fo

import harness


def _digits_dataset(name, flip_rate=0.05, seed=51):
    d = load_digits()
    X = StandardScaler().fit_transform(d.data).astype(np.float32)
    y = d.target.copy()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(y), int(flip_rate * len(y)), replace=False)
    noisy = y.copy()
    noisy[idx] = (y[idx] + rng.integers(1, 10, len(idx))) % 10
    ds = fo.Dataset(name)
    ds.add_samples(
        [
            fo.Sample(
                filepath=f"/nonexistent/{i}.png",
                ground_truth=fo.Classification(label=str(v)),
                truth=str(t),
            )
            for i, (v, t) in enumerate(zip(noisy, y))
        ]
    )
    ds.set_values("emb", list(X))
    return ds, X, noisy, y


@pytest.fixture
def digits(dataset_name, api):
    ds, X, noisy, y = _digits_dataset(dataset_name)
    api.compute_clusters(
        ds, "k", "emb", method="kmeans", kmeans__n_clusters=10
    )
    return ds, X, noisy, y


def _state(ds):
    """What a refused call must leave as it was."""
    ds.reload()
    runs = {k: ds.get_run_info(k).config.serialize() for k in ds.list_runs()}
    return (
        sorted(ds.get_field_schema(include_private=True)),
        ds.list_saved_views(),
        runs,
        ds.count_sample_tags(),
    )


def test_audit_finds_the_flipped_labels_and_the_run_owns_it(api, digits):
    ds, X, noisy, y = digits
    out = api.audit_labels(ds, "k", "ground_truth")
    flipped = noisy != y
    ids = ds.values("id")
    susp = np.array(ds.values("k_label_suspicion"), dtype=float)
    top = np.argsort(-susp)[: flipped.sum()]
    # at least what a plain vote of 20 neighbours on the same vectors finds
    V = normalize(X)
    nn = NearestNeighbors(n_neighbors=21).fit(V)
    I = nn.kneighbors(V, return_distance=False)[:, 1:]
    plain = 1 - (noisy[I] == noisy[:, None]).mean(axis=1)
    plain_top = np.argsort(-plain, kind="stable")[: flipped.sum()]
    assert flipped[top].mean() >= flipped[plain_top].mean() >= 0.9
    # the suggestions name the true digit for the found ones
    sugg = np.array(ds.values("k_label_suggestion"))
    hit = top[flipped[top]]
    assert (sugg[hit] == y[hit].astype(str)).mean() >= 0.9

    # the suspects' saved view, most suspicious first
    view = ds.load_saved_view("k label suspects")
    assert len(view) == out["n_suspects"] > 0
    shown = view.values("k_label_suspicion")
    assert shown == sorted(shown, reverse=True) and min(shown) >= 0.8
    assert set(view.values("id")) <= set(ids)

    # per cluster statistics and a summary, in the run info
    info = api.get_clustering_run_info(ds, "k")
    record = info["actions"]["audit_labels"]
    clusters = record["clusters"]
    assert sum(c["labelled"] for c in clusters.values()) == len(ds)
    assert sum(c["suspects"] for c in clusters.values()) == out["n_suspects"]
    assert all(0 < c["purity"] <= 1 for c in clusters.values())
    assert any("Label audit of 'ground_truth'" in s for s in info["summary"])
    assert record["config"]["threshold"] == 0.8

    # a second call with other settings replaces the first
    again = api.audit_labels(ds, "k", "ground_truth", threshold=0.5)
    assert again["n_suspects"] > out["n_suspects"]
    assert len(ds.load_saved_view("k label suspects")) == again["n_suspects"]
    record = api.get_clustering_run_info(ds, "k")["actions"]["audit_labels"]
    assert record["config"]["threshold"] == 0.5

    # renaming the run keeps the fields and renames the view
    api.rename_clustering_run(ds, "k", "k2")
    assert "k2 label suspects" in ds.list_saved_views()
    assert ds.has_sample_field("k_label_suspicion")
    # deleting it removes the fields and the view
    api.delete_clustering_run(ds, "k2")
    ds.reload()
    assert not ds.has_sample_field("k_label_suspicion")
    assert not ds.has_sample_field("k_label_suggestion")
    assert ds.list_saved_views() == []


def test_a_string_label_field_partial_labels_and_a_tag(api, digits):
    ds, X, noisy, y = digits
    unlabelled = ds.limit(40)
    unlabelled.set_field("truth", None).save()
    out = api.audit_labels(ds, "k", "truth", tag="check-label")
    assert out["n_unlabelled"] == 40
    assert any("40 samples have no label" in s for s in out["summary"])
    assert set(unlabelled.values("k_label_suspicion")) == {None}
    assert ds.count_sample_tags().get("check-label") == out["n_suspects"]
    # clean labels: few suspects
    assert out["n_suspects"] < 0.03 * len(ds)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(label_field="nope"), "has no field 'nope'"),
        (dict(label_field="emb"), "needs a Classification or a string"),
        (dict(label_field="ground_truth", threshold=0), "out of range"),
        (dict(label_field="ground_truth", threshold=1.5), "out of range"),
        (dict(label_field="ground_truth", threshold="x"), "must be a number"),
        (dict(label_field="ground_truth", n_neighbors=0), "n_neighbors"),
        (dict(label_field="ground_truth", bogus=1), "bogus"),
        (dict(label_field="one_class"), "at least two classes"),
        (dict(label_field="empty"), "has a label in 'empty'"),
    ],
)
def test_bad_audit_inputs_are_refused_and_nothing_is_written(
    api, digits, kwargs, message
):
    ds = digits[0]
    ds.set_values("one_class", ["7"] * len(ds))
    ds.add_sample_field("empty", fo.StringField)
    before = _state(ds)
    with pytest.raises(api.InputError, match=message):
        api.audit_labels(ds, "k", **kwargs)
    assert _state(ds) == before


def test_a_view_without_the_runs_samples_and_other_refusals(api, digits):
    ds = digits[0]
    other = fo.Dataset(ds.name + "-other")
    try:
        before = _state(ds)
        with pytest.raises(api.InputError, match="has no clustering run"):
            api.audit_labels(ds, "nope", "ground_truth")
        # the run's samples were deleted from the view
        gone = ds.exists("k_cluster", False)
        with pytest.raises(api.InputError, match="No sample of this view"):
            api.compute_outliers(gone, "k")
        with pytest.raises(api.InputError, match="top must be a positive"):
            api.compute_outliers(ds, "k", top=0)
        # a saved view of the user's is never overwritten
        ds.save_view("k outliers", ds.limit(3))
        with pytest.raises(api.InputError, match="saved view 'k outliers'"):
            api.compute_outliers(ds, "k")
        ds.delete_saved_view("k outliers")
        # a field of the user's under the action's name is never written
        ds.add_sample_field("k_outlier", fo.FloatField)
        with pytest.raises(api.InputError, match="already exists"):
            api.compute_outliers(ds, "k")
        ds.delete_sample_field("k_outlier")
        assert _state(ds) == before
    finally:
        other.delete()


def test_a_second_call_on_the_same_run_waits_its_turn(api, plugin, digits):
    ds = digits[0]
    claims = importlib.import_module(harness.PLUGIN_MODULE + ".claims")
    before = _state(ds)
    with claims.claim(ds, None, [], edits="k"):
        with pytest.raises(api.InputError, match="Run 'k' is being written"):
            api.compute_outliers(ds, "k")
    assert _state(ds) == before
    api.compute_outliers(ds, "k")  # once released


def test_outliers_are_scored_stored_and_replaced(api, digits):
    ds = digits[0]
    out = api.compute_outliers(ds, "k", top=25)
    scores = np.array(ds.values("k_outlier"), dtype=float)
    assert 0.8 < np.median(scores) < 1.25
    view = ds.load_saved_view("k outliers")
    assert len(view) == 25
    shown = view.values("k_outlier")
    assert shown == sorted(shown, reverse=True)
    assert min(shown) == pytest.approx(out["cutoff"])
    assert np.isclose(shown[0], scores.max())
    record = api.get_clustering_run_info(ds, "k")["actions"][
        "compute_outliers"
    ]
    assert sum(c["outliers"] for c in record["clusters"].values()) == 25
    # other settings replace the field, the view and the record
    api.compute_outliers(ds, "k", method="knn_distance", n_neighbors=10)
    assert len(ds.load_saved_view("k outliers")) == len(ds) // 100 + 1
    record = api.get_clustering_run_info(ds, "k")["actions"][
        "compute_outliers"
    ]
    assert record["config"]["method"] == "knn_distance"
    assert record["config"]["params"]["n_neighbors"] == 10


# Runs compute_outliers in a fresh process, killed (SIGKILL) either
# before or after the run's record of the call is saved
KILLED_ACTION = harness.PLUGIN_SCRIPT + r"""
name, when = sys.argv[1], sys.argv[2]
(die_after if when == "after" else die_instead)(runs, "save_action")
api.compute_outliers(fo.load_dataset(name), "k")
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_an_action_killed_around_its_record(api, digits, test_env, when):
    """Killed before the run's record of the call is saved, the repair
    removes the fields it wrote; killed after, the call had finished and
    the repair keeps its fields and its record."""
    ds = digits[0]
    ds.persistent = True  # the other process loads it
    before = _state(ds)
    harness.run_script(
        KILLED_ACTION, ds.name, when, env=test_env, expect=-signal.SIGKILL
    )
    ds.reload()
    assert "k_outlier" in ds.get_field_schema()  # the dead call wrote it
    repaired = api.repair_interrupted_runs(ds)
    assert len(repaired) == 1, repaired
    info = api.get_clustering_run_info(ds, "k")
    if when == "before":
        assert "Repaired run 'k'" in repaired[0], repaired
        assert _state(ds) == before
        assert "compute_outliers" not in info.get("actions", {})
    else:
        assert "finished call" in repaired[0], repaired
        assert "compute_outliers" in info["actions"]
        assert len(ds.exists("k_outlier")) == len(ds)
