"""Clustering runs end to end: the API, the operators, run storage, and
every bad input named in the contract (clear error, dataset unchanged)."""

import asyncio
import importlib
import json
import re
from datetime import datetime

import numpy as np
import pytest

import fiftyone as fo
import fiftyone.operators as foo

PLUGIN_MODULE = "fiftyone.plugins.orgs.curate.clustering"

URI = "@curate/clustering"


def blobs(n_per=40, k=3, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 6
    X = np.concatenate([c + rng.normal(size=(n_per, d)) for c in centers])
    y = np.repeat(np.arange(k), n_per)
    return X.astype(np.float32), y


def make_dataset(name, X, field="emb"):
    ds = fo.Dataset(name)
    ds.add_samples(
        [fo.Sample(filepath=f"/nonexistent/{i}.png") for i in range(len(X))]
    )
    ds.set_values(field, list(X))
    return ds


def snapshot(ds):
    """Everything a failed run must leave as it was."""
    ds.reload()
    schema = {k: type(v).__name__ for k, v in ds.get_field_schema().items()}
    docs = list(
        ds._sample_collection.find({}, {"last_modified_at": 0}).sort("_id")
    )
    return schema, sorted(ds.list_runs()), docs


@pytest.fixture
def blob_ds(dataset_name, plugin):
    X, y = blobs()
    ds = make_dataset(dataset_name, X)
    return ds, y


def test_kmeans_run_writes_fields_and_results(api, blob_ds):
    ds, y = blob_ds
    out = api.compute_clusters(
        ds, "km", "emb", method="kmeans", kmeans__n_clusters=3
    )
    assert out["n_clusters"] == 3
    assert out["cluster_field"] == "km_cluster"
    assert out["score_field"] == "km_distance"

    schema = ds.get_field_schema()
    assert isinstance(schema["km_cluster"], fo.StringField)
    assert isinstance(schema["km_distance"], fo.FloatField)
    labels = np.array(ds.values("km_cluster"))
    assert set(labels) == {"0", "1", "2"}
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(y, labels) == 1.0
    assert min(ds.values("km_distance")) >= 0

    results = api.load_clustering_results(ds, "km")
    assert results["centroids"].shape == (3, 16)
    ids = set(ds.values("id"))
    for cid, c in results["clusters"].items():
        assert c["size"] == int((labels == cid).sum())
        reps = c["representatives"]
        assert reps and set(reps) <= ids
        rep_labels = ds.select(reps).values("km_cluster")
        assert set(rep_labels) == {cid}
        # most typical first
        dists = dict(zip(ds.values("id"), ds.values("km_distance")))
        rep_d = [dists[r] for r in reps]
        assert rep_d == sorted(rep_d)
    assert results["metrics"]["silhouette"] > 0.5
    assert results["metrics"]["noise_fraction"] == 0


def test_results_hold_no_embeddings(api, blob_ds, runs):
    ds, _ = blob_ds
    api.compute_clusters(
        ds, "km", "emb", method="kmeans", kmeans__n_clusters=3
    )
    results = runs.load_results(ds, "km")
    n = len(ds)

    def walk(obj):
        if isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            assert len(obj) < n, "a per-sample list was stored"
            for v in obj:
                walk(v)

    walk(results)
    assert len(json.dumps(results)) < 50000


def test_run_info_is_complete(api, blob_ds):
    ds, _ = blob_ds
    api.compute_clusters(
        ds, "km", "emb", method="kmeans", kmeans__n_clusters=3
    )
    info = api.get_clustering_run_info(ds, "km")
    datetime.fromisoformat(info["timestamp"])
    assert info["fiftyone_version"] == fo.__version__
    assert re.match(r"\d+\.\d+\.\d+", info["plugin_version"])
    config = info["config"]
    assert config["method"] == "kmeans"
    assert config["params"]["n_clusters"] == 3
    assert config["params"]["max_iter"] == 25  # defaults are stored too
    assert config["embeddings_field"] == "emb"
    assert config["normalize"] is True
    assert config["reduce"] == "none"
    stats = info["statistics"]
    assert stats["n_clusters"] == 3
    assert sum(c["size"] for c in stats["clusters"].values()) == len(ds)
    assert "centroid" not in stats["clusters"]["0"]
    json.dumps(info)


def test_auto_k_records_the_curve(api, blob_ds):
    ds, _ = blob_ds
    out = api.compute_clusters(
        ds, "auto", "emb", method="kmeans", kmeans__k_max=8
    )
    assert out["n_clusters"] == 3
    info = api.get_clustering_run_info(ds, "auto")
    curve = info["statistics"]["k_curve"]
    assert [k for k, _ in curve] == list(range(2, 9))
    assert max(curve, key=lambda kv: kv[1])[0] == 3
    assert info["config"]["params"]["n_clusters"] == 3


@pytest.mark.parametrize(
    "method,params",
    [
        ("minibatch_kmeans", {"minibatch_kmeans__n_clusters": 3}),
        ("birch", {"birch__n_clusters": 3}),
        ("agglomerative", {"agglomerative__n_clusters": 3}),
        ("gaussian_mixture", {"gaussian_mixture__n_clusters": 3}),
        (
            "dbscan",
            {"reduce": "none", "dbscan__eps": 0.3, "dbscan__min_samples": 5},
        ),
        (
            "hdbscan",
            {"reduce": "pca", "pca__n_components": 5},
        ),
    ],
)
def test_every_method_runs(api, blob_ds, method, params):
    from sklearn.metrics import adjusted_rand_score

    ds, y = blob_ds
    out = api.compute_clusters(ds, "r", "emb", method=method, **params)
    labels = ds.values("r_cluster")
    assert out["n_clusters"] == 3
    assert adjusted_rand_score(y, labels) > 0.95
    # each method's own per-sample score: the membership strength of
    # HDBSCAN and the probability of a Gaussian mixture are kept
    kind = {"hdbscan": "strength", "gaussian_mixture": "probability"}
    kind = kind.get(method, "distance")
    assert out["score_field"] == f"r_{kind}"
    scores = np.array(ds.values(f"r_{kind}"), dtype=float)
    assert np.isfinite(scores).all() and (scores >= 0).all()
    if kind != "distance":
        assert scores.max() <= 1.0 and np.median(scores) > 0.5


def test_noise_is_minus_one(api, dataset_name, plugin):
    X, _ = blobs()
    outliers = np.random.default_rng(1).normal(size=(5, 16)) * 60
    ds = make_dataset(dataset_name, np.concatenate([X, outliers]))
    api.compute_clusters(
        ds,
        "db",
        "emb",
        method="dbscan",
        normalize=False,
        reduce="none",
        dbscan__eps=7.0,
        dbscan__min_samples=5,
    )
    labels = ds.values("db_cluster")
    assert labels[-5:] == ["-1"] * 5
    assert "-1" not in labels[:-5]
    info = api.get_clustering_run_info(ds, "db")
    assert info["statistics"]["clusters"]["-1"]["size"] == 5
    assert info["statistics"]["metrics"]["noise_fraction"] == pytest.approx(
        5 / len(ds)
    )


def test_view_and_selection_targets(api, blob_ds):
    ds, _ = blob_ds
    view = ds.limit(60)
    api.compute_clusters(
        view, "part", "emb", method="kmeans", kmeans__n_clusters=2
    )
    assert len(ds.exists("part_cluster")) == 60
    info = api.get_clustering_run_info(ds, "part")
    assert info["statistics"]["n_samples"] == 60
    assert len(ds.load_run_view("part")) == 60


def test_rename_and_delete(api, blob_ds):
    ds, _ = blob_ds
    before = snapshot(ds)
    api.compute_clusters(ds, "a", "emb", method="kmeans", kmeans__n_clusters=3)
    api.rename_clustering_run(ds, "a", "b")
    assert api.list_clustering_runs(ds) == ["b"]
    assert api.get_clustering_run_info(ds, "b")["config"]["cluster_field"] == (
        "a_cluster"
    )
    with pytest.raises(ValueError, match="no clustering run 'a'"):
        api.get_clustering_run_info(ds, "a")
    api.delete_clustering_run(ds, "b")
    assert snapshot(ds)[:2] == before[:2]


def test_existing_field_never_loads_a_model(test_env, tmp_path):
    import subprocess
    import sys

    code = """
import sys
import numpy as np
import fiftyone as fo
import fiftyone.operators as foo
ds = fo.Dataset()
ds.add_samples([fo.Sample(filepath=f"/x/{i}.png") for i in range(60)])
ds.set_values("emb", list(np.random.default_rng(0).normal(size=(60, 8))))
res = foo.get_operator("@curate/clustering/compute_clusters")(
    ds, run_key="r", embeddings_field="emb", method="kmeans",
    kmeans__n_clusters=3,
)
assert res.error is None, res.error
loaded = [m for m in ("torch", "open_clip", "torchvision") if m in sys.modules]
print("LOADED", loaded)
ds.delete()
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=test_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LOADED []" in out.stdout


def test_model_computes_missing_embeddings_first(api, dataset_name, tmp_path):
    from PIL import Image

    colors = [(220, 30, 30), (30, 200, 40), (40, 40, 230)]
    rng = np.random.default_rng(0)
    samples = []
    for i in range(30):
        c = np.array(colors[i % 3]) + rng.integers(-20, 20, 3)
        img = np.tile(c.clip(0, 255).astype(np.uint8), (24, 24, 1))
        path = str(tmp_path / f"{i}.png")
        Image.fromarray(img).save(path)
        samples.append(fo.Sample(filepath=path, truth=str(i % 3)))
    ds = fo.Dataset(dataset_name)
    ds.add_samples(samples)

    out = api.compute_clusters(
        ds,
        "px",
        "emb",
        method="kmeans",
        model="pixels",
        pixels__size=8,
        kmeans__n_clusters=3,
    )
    assert out["embeddings"]["embedded"] == 30
    assert len(ds.exists("emb")) == 30
    from sklearn.metrics import adjusted_rand_score

    assert (
        adjusted_rand_score(ds.values("truth"), ds.values("px_cluster")) == 1
    )
    info = api.get_clustering_run_info(ds, "px")
    assert info["config"]["model"] == "pixels"

    # the field is complete now: nothing is embedded again
    out = api.compute_clusters(
        ds, "px2", "emb", method="kmeans", model="pixels", kmeans__n_clusters=3
    )
    assert out["embeddings"]["embedded"] == 0
    assert out["embeddings"]["skipped"] == 30

    before = snapshot(ds)
    with pytest.raises(ValueError, match="Unknown embedder 'nope'"):
        api.compute_clusters(ds, "px3", "emb2", method="kmeans", model="nope")
    with pytest.raises(ValueError, match="Unknown parameter 'bogus'"):
        api.compute_clusters(
            ds, "px3", "emb2", method="kmeans", model="pixels", pixels__bogus=1
        )
    assert snapshot(ds) == before


def test_projection_with_the_run_reuses_its_neighbour_graph(
    api, plugin, blob_ds, monkeypatch
):
    import fiftyone.brain as fob

    neighbors = importlib.import_module(PLUGIN_MODULE + ".core.neighbors")
    calls = []
    real = neighbors.knn_graph

    def counted(features, n_neighbors, *args, **kwargs):
        calls.append((features.shape, n_neighbors))
        return real(features, n_neighbors, *args, **kwargs)

    monkeypatch.setattr(neighbors, "knn_graph", counted)
    ds, y = blob_ds
    out = api.compute_clusters(
        ds, "hdb", "emb", method="hdbscan", projection_brain_key="hdb_umap"
    )
    assert out["n_clusters"] == 3
    # one neighbour search, with enough neighbours for both layouts
    assert calls == [((len(ds), 16), 15)]
    assert "hdb_umap" in ds.list_brain_runs(type=fob.Visualization)
    points = ds.load_brain_results("hdb_umap").points
    assert points.shape == (len(ds), 2)
    config = api.get_clustering_run_info(ds, "hdb")["config"]
    assert config["projection_keys"] == ["hdb_umap"]

    before = snapshot(ds)
    with pytest.raises(ValueError, match="already taken"):
        api.compute_clusters(
            ds,
            "hdb2",
            "emb",
            method="hdbscan",
            projection_brain_key="hdb_umap",
        )
    assert snapshot(ds) == before


# --- bad input: a clear error, and the dataset exactly as before ---------


def _bad_dataset(dataset_name):
    X, _ = blobs()
    ds = make_dataset(dataset_name, X)
    ds.add_sample_field("other", fo.StringField)
    ds.set_values("other", ["x"] * len(ds))
    return ds


BAD = [
    (dict(method="nope"), "Unknown clustering method 'nope'.*kmeans"),
    (dict(method="kmeans", kmeans__bogus=1), "Unknown parameter 'bogus'"),
    (dict(method="kmeans", dbscan__eps=1, spam=2), "Unknown parameter 'spam'"),
    (dict(method="kmeans", kmeans__n_clusters=1), "must be >= 2"),
    (dict(method="kmeans", kmeans__n_clusters="3"), "must be of type int"),
    (dict(method="kmeans", kmeans__n_clusters=500), "larger than the number"),
    (dict(method="hdbscan", reduce="tsne"), "Unknown reduction 'tsne'"),
    (
        dict(method="agglomerative", agglomerative__metric="cosine"),
        "needs agglomerative__metric='euclidean'",
    ),
    (dict(embeddings_field="missing"), "has no field 'missing'"),
    (dict(embeddings_field="other"), "not a vector field"),
    (dict(run_key="bad key"), "not valid"),
    (dict(run_key="taken"), "already taken"),
    (dict(cluster_field="other"), "already exists"),
    (dict(cluster_field="emb"), "already exists"),
]


@pytest.mark.parametrize("kwargs,message", BAD)
def test_bad_input(api, dataset_name, plugin, kwargs, message):
    ds = _bad_dataset(dataset_name)
    ds.register_run("taken", ds.init_run())
    before = snapshot(ds)
    args = dict(run_key="r", embeddings_field="emb", method="kmeans")
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        api.compute_clusters(ds, **args)
    assert snapshot(ds) == before


def test_mixed_vector_lengths(api, dataset_name, plugin):
    X, _ = blobs()
    ds = make_dataset(dataset_name, X)
    s = ds.first()
    s["emb"] = np.ones(8, dtype=np.float32)
    s.save()
    before = snapshot(ds)
    with pytest.raises(ValueError, match="different lengths: 8 and 16"):
        api.compute_clusters(ds, "r", "emb", method="kmeans")
    assert snapshot(ds) == before


def test_missing_vectors_are_counted_and_can_be_skipped(
    api, dataset_name, plugin
):
    X, _ = blobs()
    ds = make_dataset(dataset_name, X)
    ds.add_samples([fo.Sample(filepath=f"/x/{i}.png") for i in range(7)])
    before = snapshot(ds)
    with pytest.raises(ValueError, match="7 of 127 samples have no value"):
        api.compute_clusters(ds, "r", "emb", method="kmeans")
    assert snapshot(ds) == before

    out = api.compute_clusters(
        ds,
        "r",
        "emb",
        method="kmeans",
        kmeans__n_clusters=3,
        skip_missing=True,
    )
    assert out["n_samples"] == 120
    assert ds.count_values("r_cluster")[None] == 7


def test_empty_view(api, blob_ds):
    ds, _ = blob_ds
    before = snapshot(ds)
    with pytest.raises(ValueError, match="view is empty"):
        api.compute_clusters(ds.limit(0), "r", "emb", method="kmeans")
    assert snapshot(ds) == before


def test_failure_while_writing_leaves_nothing(api, blob_ds):
    ds, _ = blob_ds
    before = snapshot(ds)

    def progress(fraction, stage):
        # the last report of the write comes after the fields exist
        if stage == "writing" and fraction >= 0.999:
            raise KeyboardInterrupt("interrupted")

    with pytest.raises(KeyboardInterrupt):
        api.compute_clusters(
            ds,
            "r",
            "emb",
            method="kmeans",
            kmeans__n_clusters=3,
            progress=progress,
        )
    assert snapshot(ds) == before


# --- operators ------------------------------------------------------------


def test_operator_from_python_and_execute(blob_ds, api):
    ds, _ = blob_ds
    op = foo.get_operator(f"{URI}/compute_clusters")
    for name in ("run_key", "embeddings_field", "method", "delegate"):
        assert name in op.__call__.__doc__
    result = op(
        ds,
        run_key="viaop",
        embeddings_field="emb",
        method="kmeans",
        kmeans__n_clusters=3,
    )
    assert result.error is None, result.error
    assert result.result["n_clusters"] == 3
    assert ds.count_values("viaop_cluster") == {"0": 40, "1": 40, "2": 40}

    res = foo.execute_operator(
        f"{URI}/get_clustering_run_info",
        ctx={"dataset": ds, "params": {"run_key": "viaop"}},
    )
    assert res.result["config"]["method"] == "kmeans"
    foo.get_operator(f"{URI}/rename_clustering_run")(ds, "viaop", "v2")
    assert api.list_clustering_runs(ds) == ["v2"]
    foo.get_operator(f"{URI}/delete_clustering_run")(ds, "v2")
    assert api.list_clustering_runs(ds) == []
    assert not ds.has_field("viaop_cluster")


def test_form_opened_from_a_panel(blob_ds):
    # the App adds the panel's id and state to a form opened from a panel
    ds, _ = blob_ds
    res = foo.execute_operator(
        f"{URI}/compute_clusters",
        ctx={
            "dataset": ds,
            "params": {
                "run_key": "frompanel",
                "embeddings_field": "emb",
                "method": "kmeans",
                "kmeans__n_clusters": 3,
                "panel_id": "abc",
                "panel_state": {"run_key": None},
            },
        },
    )
    assert res.result["n_clusters"] == 3


def test_operator_failure_reports_the_error(blob_ds):
    ds, _ = blob_ds
    from fiftyone.operators.executor import ExecutionError

    with pytest.raises(ExecutionError, match="has no field 'missing'"):
        foo.get_operator(f"{URI}/compute_clusters")(
            ds, run_key="r", embeddings_field="missing", method="kmeans"
        )
    assert not ds.has_field("r_cluster")


def test_form_is_generated_from_the_schema(blob_ds, plugin):
    from fiftyone.operators.executor import resolve_type

    ds, _ = blob_ds
    methods = importlib.import_module(PLUGIN_MODULE + ".core.methods")

    def form(params):
        resolved = asyncio.run(
            resolve_type(
                foo.OperatorRegistry(),
                f"{URI}/compute_clusters",
                {
                    "dataset_name": ds.name,
                    "params": params,
                    "target": "inputs",
                },
            )
        )
        return resolved.to_json()["type"]["properties"]

    props = form({"method": "kmeans"})
    for p in methods.METHODS.get("kmeans").params:
        assert f"kmeans__{p.name}" in props
    assert "hdbscan__min_cluster_size" not in props
    assert "umap__n_components" not in props

    props = form({"method": "hdbscan"})
    assert "hdbscan__min_cluster_size" in props
    assert "umap__n_components" in props  # density-based: UMAP by default
    assert set(props["method"]["type"]["values"]) == set(
        methods.METHODS.names()
    )

    props = form({"method": "kmeans", "kmeans__n_clusters": 0})
    assert props["kmeans__n_clusters"]["invalid"] is True
    assert ">= 2" in props["kmeans__n_clusters"]["error_message"]

    ds.register_run("taken", ds.init_run())
    props = form({"method": "kmeans", "run_key": "taken"})
    assert props["run_key"]["invalid"] is True

    # how embeddings are computed shows only when a model computes them
    options = ("batch_size", "num_workers", "device", "precision")
    props = form({"method": "kmeans", "model": "existing"})
    assert not [k for k in options if k in props]
    props = form({"method": "kmeans", "model": "pixels"})
    assert all(k in props for k in options)
    assert "float32" in props["precision"]["type"]["values"]


# --- layering and docs ------------------------------------------------------


def test_readme_tables_are_generated(plugin):
    import pathlib
    import subprocess
    import sys

    repo = pathlib.Path(__file__).parents[2]
    subprocess.run(
        [sys.executable, "scripts/gen_docs.py", "--check"],
        cwd=repo,
        check=True,
    )
