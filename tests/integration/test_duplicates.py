"""find_duplicates and select_subset through the API on a real database:
quality on real image files with planted near duplicates, what is written
and owned, and every bad input refused before anything is written."""

import math
import signal

import numpy as np
import pytest
from sklearn.datasets import load_digits

import fiftyone as fo

import harness
from fiftyone import ViewField as F

import near_duplicates


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dups")
    return near_duplicates.make_images(str(folder))


@pytest.fixture
def ds(dataset_name, api, images):
    paths, _ = images
    dataset = fo.Dataset(dataset_name)
    dataset.add_samples([fo.Sample(filepath=p) for p in paths])
    api.compute_embeddings(dataset, "px", model="pixels")
    return dataset


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


def test_planted_near_duplicates_are_found_at_the_suggested_threshold(
    api, ds, images
):
    paths, pairs = images
    preview = api.duplicate_threshold_preview(ds, "px")
    assert preview["found"] and 0.9 < preview["suggested"] < 1
    assert sum(preview["histogram"]["count"]) == len(ds)
    assert preview["examples"]["above"] and preview["examples"]["below"]
    out = api.find_duplicates(ds, "d", "px", tag="dup")
    assert out["threshold"] == preview["suggested"]
    by_path = dict(zip(*ds.values(["filepath", "d_group"])))
    groups = [by_path[p] for p in paths]
    recall, precision = near_duplicates.pair_scores(groups, pairs)
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)
    assert out["n_exact_pairs"] >= 5

    # one kept per group, the others in the saved view and tagged
    n_groups = out["n_groups"]
    assert len(ds.match(F("d_keep") == True)) == n_groups  # noqa: E712
    not_kept = ds.load_saved_view("d not kept")
    assert len(not_kept) == out["n_not_kept"] == out["n_in_groups"] - n_groups
    assert ds.count_sample_tags()["dup"] == out["n_not_kept"]
    assert len(ds.match(F("d_group") == None)) == len(ds) - out["n_in_groups"]

    # a run of its own: info, rename, delete
    assert api.list_duplicates_runs(ds) == ["d"]
    assert api.list_clustering_runs(ds) == []
    info = api.get_duplicates_run_info(ds, "d")
    assert info["config"]["threshold"] == out["threshold"]
    assert "groups of duplicates" in info["summary"][0]
    api.rename_duplicates_run(ds, "d", "d2")
    assert ds.list_saved_views() == ["d2 not kept"]
    assert ds.has_sample_field("d_group")
    api.delete_duplicates_run(ds, "d2")
    ds.reload()
    assert not ds.has_sample_field("d_group") and ds.list_runs() == []
    assert ds.list_saved_views() == []


def test_keep_largest_exact_only_and_within_clusters(api, ds, images):
    paths, pairs = images
    out = api.find_duplicates(ds, "big", "px", threshold=0.999, keep="largest")
    kept = ds.match(F("big_keep") == True)  # noqa: E712
    for group in kept.values("big_group")[:10]:
        members = ds.match(F("big_group") == group)
        ds.compute_metadata()
        areas = [m.width * m.height for m in members.values("metadata")]
        best = members.match(F("big_keep") == True).first().metadata  # noqa
        assert best.width * best.height == max(areas)
    # identical embeddings and contents: only the byte copies at 1.0
    exact = api.find_duplicates(ds, "ex", "px", threshold=1.0)
    assert exact["n_groups"] >= 5
    assert out["n_groups"] >= exact["n_groups"]
    # within the clusters of a run: no pair across clusters
    api.compute_clusters(ds, "km", "px", method="kmeans", kmeans__n_clusters=4)
    within = api.find_duplicates(ds, "w", "px", run_key="km", exact=False)
    for g in set(ds.exists("w_group").values("w_group")):
        assert len(set(ds.match(F("w_group") == g).values("km_cluster"))) == 1
    counts = api.duplicates_per_cluster(ds, "w", "km_cluster")
    assert (
        sum(c["in_groups"] for c in counts.values()) == within["n_in_groups"]
    )
    view = api.duplicate_groups_view(ds, "w")
    assert len(view) == within["n_in_groups"]
    shown = view.values("w_group")
    assert shown == sorted(shown)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(threshold=0), "out of range"),
        (dict(threshold=1.5), "out of range"),
        (dict(threshold=-0.2), "out of range"),
        (dict(threshold="x"), "cosine similarity in"),
        (dict(embeddings_field="nope"), "has no field 'nope'"),
        (dict(embeddings_field="partial"), "have no value in 'partial'"),
        (dict(keep="smallest"), "keep must be one of"),
        (dict(dup_key="has space"), "is not valid"),
        (dict(run_key="nope"), "has no clustering run 'nope'"),
    ],
)
def test_bad_duplicates_inputs_write_nothing(api, ds, kwargs, message):
    ds.set_values("partial", [None] * 3 + [np.ones(4)] * (len(ds) - 3))
    args = dict(dup_key="d", embeddings_field="px")
    args.update(kwargs)
    before = _state(ds)
    with pytest.raises(api.InputError, match=message):
        api.find_duplicates(ds, **args)
    assert _state(ds) == before


def test_a_run_from_another_view_and_taken_names(api, ds):
    api.compute_clusters(
        ds.limit(100), "part", "px", method="kmeans", kmeans__n_clusters=3
    )
    before = _state(ds)
    with pytest.raises(api.InputError, match="computed on another view"):
        api.find_duplicates(ds, "d", "px", run_key="part")
    with pytest.raises(api.InputError, match="computed on another view"):
        api.select_subset(ds, "part", 10)
    with pytest.raises(api.InputError, match="already taken"):
        api.find_duplicates(ds, "part", "px")
    ds.save_view("d not kept", ds.limit(2))
    before = _state(ds)
    with pytest.raises(api.InputError, match="saved view 'd not kept'"):
        api.find_duplicates(ds, "d", "px")
    assert _state(ds) == before


# --------------------------------------------------------------------------
# Balanced subsets
# --------------------------------------------------------------------------


def _imbalanced_digits(name, seed=51):
    """Digit c keeps (c + 1) / 10 of its images (about 990 in all)."""
    d = load_digits()
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(10):
        idx = np.flatnonzero(d.target == c)
        keep += list(
            rng.choice(idx, int(round(len(idx) * (c + 1) / 10)), replace=False)
        )
    keep = np.sort(keep)
    ds = fo.Dataset(name)
    ds.add_samples(
        [
            fo.Sample(filepath=f"/nonexistent/{i}.png", digit=str(d.target[i]))
            for i in keep
        ]
    )
    ds.set_values("emb", list(d.data[keep].astype(np.float32)))
    return ds, d.target[keep]


def _entropy(counts):
    p = np.array([c for c in counts if c], dtype=float)
    p /= p.sum()
    return float(-(p * np.log(p)).sum())


@pytest.fixture
def digits(api, dataset_name):
    ds, y = _imbalanced_digits(dataset_name)
    api.compute_clusters(ds, "r", "emb")  # the plugin's defaults
    return ds, y


def test_a_balanced_subset_of_imbalanced_digits(api, digits):
    ds, y = digits
    out = api.select_subset(ds, "r", 300, tag="pick")
    view = ds.load_saved_view("r subset")
    assert len(view) == 300 == ds.count_sample_tags()["pick"]
    counts = view.count_values("digit")
    entropy = _entropy(counts.values())
    # HDBSCAN's defaults leave the 18 zeros as noise, merge most ones
    # into other clusters and split the nines in two. With each cluster's
    # share shared again among 3 k-means parts of it (the default):
    # 0.9681 of log(10); without parts 0.9625 (target 0.97, which no
    # variant tried reached robustly: BENCHMARKS.md, "Balanced subsets
    # on the imbalanced digits"; even a choice that knew the digits would
    # reach only 0.9763 with these clusters' shares); random selection
    # gives about 0.93
    assert entropy >= 0.965 * math.log(10), (entropy, counts)
    random_rarest = 300 * (y == 0).sum() / len(y)
    assert counts.get("0", 0) >= 2 * random_rarest, counts
    # recorded with the run: per cluster, eligible and taken, and per part
    info = api.get_clustering_run_info(ds, "r")
    record = info["actions"]["select_subset"]
    assert sum(c["taken"] for c in record["clusters"].values()) == 300
    assert any("Subset of 300 samples" in s for s in info["summary"])
    assert out["skipped"] == {}
    split = [c for c in out["clusters"].values() if "parts" in c]
    assert split and all(
        sum(p["taken"] for p in c["parts"]) == c["taken"] for c in split
    )
    assert out["config"]["sub_clusters"] == 3
    assert any("k-means parts" in s for s in out["summary"])
    skip = api.select_subset(ds, "r", 200, skip_noise=True)
    assert skip["skipped"]["noise"] == ds.count_values("r_cluster")["-1"]
    # without parts: equal shares per cluster only
    flat = api.select_subset(ds, "r", 300, sub_clusters=1)
    counts = ds.load_saved_view("r subset").count_values("digit")
    assert _entropy(counts.values()) >= 0.96 * math.log(10), counts
    assert not any("parts" in c for c in flat["clusters"].values())
    with pytest.raises(api.InputError, match="sub_clusters"):
        api.select_subset(ds, "r", 300, sub_clusters=0)
    # other orders; a second call replaces the first
    for order in ("typical", "random"):
        api.select_subset(ds, "r", 120, order=order)
        assert len(ds.load_saved_view("r subset")) == 120
    # deleting the run deletes the view
    api.delete_clustering_run(ds, "r")
    assert ds.list_saved_views() == []


def test_a_kind_split_in_two_clusters_gets_one_share_once_merged(api, digits):
    """What a user does on seeing one kind in two clusters of the grid:
    merge them in the explorer, then select. A merged cluster takes one
    share, and the balance reaches the target (here HDBSCAN's defaults
    split the nines: 0.9828 of log(10) merged, 0.9681 before)."""
    ds, y = digits
    kinds = {}  # majority digit -> the clusters it is the majority of
    for cid in ds.distinct("r_cluster"):
        if cid != "-1":
            found = ds.match(F("r_cluster") == cid).count_values("digit")
            kinds.setdefault(max(found, key=found.get), []).append(cid)
    split = {k: ids for k, ids in kinds.items() if len(ids) > 1}
    assert split, kinds  # the premise: the defaults split some kind
    for ids in split.values():
        api.merge_clusters(ds, "r", ids)
    out = api.select_subset(ds, "r", 300)
    counts = ds.load_saved_view("r subset").count_values("digit")
    assert _entropy(counts.values()) >= 0.97 * math.log(10), counts
    share = -(-300 // len(out["clusters"]))  # the equal share, rounded up
    for kind in split:  # one share each now, give or take a few strays
        assert counts[kind] <= share + 3, (kind, counts, share)


def test_subsets_skip_duplicates_and_outliers(api, dataset_name):
    ds, y = _imbalanced_digits(dataset_name)
    api.compute_clusters(
        ds, "k", "emb", method="kmeans", kmeans__n_clusters=10
    )
    api.compute_outliers(ds, "k", top=30)
    api.find_duplicates(ds, "dd", "emb", threshold=0.99, exact=False)
    out = api.select_subset(ds, "k", 300, dup_key="dd", skip_outliers=True)
    view = ds.load_saved_view("k subset")
    assert out["skipped"]["outliers"] > 0
    assert len(view.match(F("k_outlier") >= out_cutoff(api, ds))) == 0
    assert len(view.match(F("dd_keep") == False)) == 0  # noqa: E712


def out_cutoff(api, ds):
    info = api.get_clustering_run_info(ds, "k")
    return info["actions"]["compute_outliers"]["cutoff"]


@pytest.mark.parametrize(
    "n,message",
    [
        (5000, "more than the"),
        (3, "less than the 10 clusters"),
        (0, "at least 1"),
        (2.5, "whole number"),
    ],
)
def test_bad_subset_sizes_write_nothing(api, dataset_name, n, message):
    ds, _ = _imbalanced_digits(dataset_name)
    api.compute_clusters(
        ds, "k", "emb", method="kmeans", kmeans__n_clusters=10
    )
    before = _state(ds)
    with pytest.raises(api.InputError, match=message) as e:
        api.select_subset(ds, "k", n)
    if n in (5000, 3):
        assert "nothing was written" in str(e.value)
    assert _state(ds) == before


# Runs find_duplicates in a fresh process, killed (SIGKILL) when it
# registers its run: its fields and its saved view are written
KILLED_DUPLICATES = harness.PLUGIN_SCRIPT + r"""
die_instead(runs, "register")
api.find_duplicates(fo.load_dataset(sys.argv[1]), "d", "px")
"""


def test_a_killed_find_duplicates_is_repaired(api, ds, test_env):
    """The repair removes the dead call's fields and its saved view."""
    ds.persistent = True  # the other process loads it
    before = _state(ds)
    harness.run_script(
        KILLED_DUPLICATES, ds.name, env=test_env, expect=-signal.SIGKILL
    )
    ds.reload()
    assert "d_group" in ds.get_field_schema()
    assert ds.has_saved_view("d not kept")
    repaired = api.repair_interrupted_runs(ds)
    assert len(repaired) == 1 and "d not kept" in repaired[0], repaired
    assert _state(ds) == before
    api.find_duplicates(ds, "d", "px")  # the key is free again
