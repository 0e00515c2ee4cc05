"""What a clustering run says about itself: the parameters it actually
used and a readable summary first (issue: a new user's first hour)."""

from datetime import datetime

import numpy as np
import pytest

import fiftyone as fo


def three_blobs(name, n_per=100, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3 * n_per, d)).astype(np.float32)
    X[:n_per] += 8
    X[n_per : 2 * n_per] -= 8
    ds = fo.Dataset(name)
    ds.add_samples(
        [fo.Sample(filepath=f"/nonexistent/{i}.png") for i in range(len(X))]
    )
    ds.set_values("emb", list(X))
    return ds


@pytest.fixture
def ds(dataset_name, plugin):
    return three_blobs(dataset_name)


def test_the_run_stores_the_values_it_used(api, ds):
    api.compute_clusters(
        ds, "h", "emb", method="hdbscan", reduce="none", normalize=False
    )
    params = api.get_clustering_run_info(ds, "h")["config"]["params"]
    # chosen from the number of samples, not None
    assert params["min_cluster_size"] == round(np.sqrt(len(ds)))
    assert params["min_samples"] == params["min_cluster_size"]

    api.compute_clusters(ds, "k", "emb", method="kmeans", kmeans__n_clusters=3)
    params = api.get_clustering_run_info(ds, "k")["config"]["params"]
    assert params["n_clusters"] == 3
    assert "k_min" not in params and "k_max" not in params

    # with an automatic k the bounds of the choice were used: kept
    api.compute_clusters(
        ds, "a", "emb", method="kmeans", normalize=False, kmeans__k_max=5
    )
    params = api.get_clustering_run_info(ds, "a")["config"]["params"]
    assert params["n_clusters"] == 3 and params["k_max"] == 5


def test_the_summary_comes_first_and_reads_as_words(api, ds):
    out = api.compute_clusters(
        ds, "h", "emb", method="hdbscan", reduce="none", normalize=False
    )
    info = api.get_clustering_run_info(ds, "h")
    assert list(info)[0] == "summary"
    assert list(info["statistics"])[-1] == "clusters"
    text = "\n".join(info["summary"])
    assert out["summary"] == info["summary"][:-1]  # all but the time
    assert "hdbscan (min_cluster_size=17, min_samples=17" in text
    assert "3 clusters of 300 samples and 0 noise" in text
    assert "sizes 100, 100, 100" in text
    assert "strength in 'h_strength'" in text
    assert "silhouette" in text and "higher is better" in text
    assert "Davies-Bouldin index" in text and "lower is better" in text
    assert "Calinski-Harabasz index" in text
    assert "noise 0.0%" in text
    # the time, with its time zone
    stamp = info["summary"][-1].removeprefix("computed ")
    assert datetime.fromisoformat(stamp).tzinfo is not None
    assert datetime.fromisoformat(info["timestamp"]).tzinfo is not None


def test_no_noise_line_for_methods_without_noise(api, ds):
    api.compute_clusters(ds, "k", "emb", method="kmeans", kmeans__n_clusters=3)
    summary = api.get_clustering_run_info(ds, "k")["summary"]
    text = "\n".join(summary)
    assert "noise" not in text
    assert "k_min" not in text and "n_clusters=3" in text
    assert "3 clusters of 300 samples;" in text


def test_edits_since_are_counted(api, ds):
    api.compute_clusters(ds, "k", "emb", method="kmeans", kmeans__n_clusters=3)
    api.rename_cluster(ds, "k", "0", "first")
    api.merge_clusters(ds, "k", ["1", "2"])
    info = api.get_clustering_run_info(ds, "k")
    assert "2 edits by hand since (merge, rename)" in "\n".join(
        info["summary"]
    )
    assert [e["op"] for e in info["statistics"]["edits"]] == [
        "rename",
        "merge",
    ]
