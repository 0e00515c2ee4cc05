"""2-D projections: the API and the operator, the
stored brain runs as the App's Embeddings panel reads them, and every bad
input named in the contract (clear error, dataset unchanged)."""

import asyncio
import importlib
import uuid

import numpy as np
import pytest

import fiftyone as fo
import fiftyone.brain as fob
import fiftyone.operators as foo
import synthetic  # noqa: E402 (made importable by conftest)

PLUGIN_MODULE = "fiftyone.plugins.orgs.curate.clustering"
URI = "@curate/clustering"

blobs = synthetic.blobs
knn_accuracy = synthetic.knn_accuracy


def snapshot(ds):
    """Everything a failed projection must leave as it was."""
    ds.reload()
    schema = {k: type(v).__name__ for k, v in ds.get_field_schema().items()}
    docs = list(
        ds._sample_collection.find({}, {"last_modified_at": 0}).sort("_id")
    )
    configs = {
        k: ds.get_run_info(k).config.serialize() for k in ds.list_runs()
    }
    return schema, sorted(ds.list_brain_runs()), configs, docs


def make_dataset(name, X, field="emb", labels=None):
    ds = fo.Dataset(name)
    samples = []
    for i in range(len(X)):
        s = fo.Sample(filepath=f"/nonexistent/{i}.png")
        if labels is not None:
            s["digit"] = str(labels[i])
        samples.append(s)
    ds.add_samples(samples)
    ds.set_values(field, list(X))
    return ds


@pytest.fixture(scope="module")
def core(plugin):
    return importlib.import_module(PLUGIN_MODULE + ".core.projection")


@pytest.fixture(scope="module")
def digits(plugin):
    """The sklearn digits as standardised pixel vectors in a VectorField."""
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    data = load_digits()
    X = StandardScaler().fit_transform(data.data).astype(np.float32)
    name = f"projection-digits-{uuid.uuid4().hex[:6]}"
    ds = make_dataset(name, X, labels=data.target)
    yield ds, data.target
    fo.delete_dataset(name)


@pytest.fixture(scope="module")
def digits_umap(api, digits):
    """One UMAP projection of the digits through the API (UMAP compiles
    with numba once per process, so it is shared)."""
    ds, _ = digits
    calls = []
    out = api.compute_projection(
        ds,
        "digits_umap",
        embeddings_field="emb",
        progress=lambda f, label=None: calls.append((f, label)),
    )
    return out, calls


@pytest.fixture
def small_ds(dataset_name, plugin):
    X, y = blobs(60)
    return make_dataset(dataset_name, X), y


# --- API: digits, stored as the Embeddings panel reads it --------------------


def test_umap_of_digits_keeps_neighbourhoods(digits, digits_umap):
    ds, target = digits
    out, calls = digits_umap
    assert out["n_samples"] == 1797
    assert out["method"] == "umap"

    results = ds.load_brain_results("digits_umap")
    points = np.asarray(results.points)
    assert points.shape == (1797, 2)
    # points are aligned with the sample ids the results hold
    label_of = dict(zip(ds.values("id"), ds.values("digit")))
    labels = [label_of[i] for i in results.sample_ids]
    assert knn_accuracy(points, labels) >= 0.9

    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions)
    assert fractions[-1] == pytest.approx(1.0)
    assert {"reading", "UMAP epochs", "writing"} <= {l for _, l in calls}


def test_stored_as_a_brain_visualization_run(digits, digits_umap):
    ds, _ = digits
    assert "digits_umap" in ds.list_brain_runs(type=fob.Visualization)
    info = ds.get_brain_info("digits_umap")
    assert info.config.cls.startswith("fiftyone.brain.visualization.")
    assert info.config.type == "visualization"
    assert info.config.num_dims == 2
    assert info.config.projection_method == "umap"
    assert info.config.projection_params["n_neighbors"] == 15
    assert info.config.source_embeddings_field == "emb"
    # the way the App's Embeddings panel loads and filters them
    results = ds.load_brain_results("digits_umap")
    view = ds.take(100, seed=1)
    results.use_view(view, allow_missing=True)
    assert results.index_size == 100
    assert set(results.current_sample_ids) == set(view.values("id"))


def test_brain_run_rename_and_delete(api, digits):
    ds, _ = digits
    api.compute_projection(ds, "tmp_pca", embeddings_field="emb", method="pca")
    assert "tmp_pca" in api.list_projections(ds)
    ds.rename_brain_run("tmp_pca", "tmp_pca2")
    assert ds.load_brain_results("tmp_pca2").points.shape == (1797, 2)
    assert "tmp_pca2" in api.list_projections(ds)
    ds.delete_brain_run("tmp_pca2")
    assert "tmp_pca2" not in ds.list_brain_runs()


def test_view_and_missing_embeddings(api, digits):
    ds, _ = digits
    view = ds.limit(300)
    out = api.compute_projection(
        view, "view_pca", embeddings_field="emb", method="pca"
    )
    assert out["n_samples"] == 300
    results = ds.load_brain_results("view_pca")
    assert list(results.sample_ids) == view.values("id")
    ds.delete_brain_run("view_pca")


def test_missing_embeddings_can_be_skipped(api, small_ds):
    ds, _ = small_ds
    ds.limit(5).set_field("emb", None).save()
    with pytest.raises(ValueError, match="5 of 60 samples have no value"):
        api.compute_projection(ds, "p", embeddings_field="emb", method="pca")
    assert ds.list_brain_runs() == []
    out = api.compute_projection(
        ds, "p", embeddings_field="emb", method="pca", skip_missing=True
    )
    assert out["n_samples"] == 55
    assert len(ds.load_brain_results("p").points) == 55


def test_tsne(api, small_ds):
    ds, y = small_ds
    api.compute_projection(
        ds,
        "ts",
        embeddings_field="emb",
        method="tsne",
        tsne__perplexity=10,
        tsne__max_iter=250,
    )
    results = ds.load_brain_results("ts")
    assert results.points.shape == (60, 2)
    assert ds.get_brain_info("ts").config.projection_method == "tsne"


# --- clustering runs ---------------------------------------------------------


def test_projection_of_a_clustering_run(api, digits):
    ds, _ = digits
    view = ds.limit(1000)
    api.compute_clusters(
        view, "dk", "emb", method="kmeans", kmeans__n_clusters=10
    )
    try:
        out = api.compute_projection(ds, "dk_pca", run_key="dk", method="pca")
        # the run's samples, not the whole dataset
        assert out["n_samples"] == 1000
        assert out["embeddings_field"] == "emb"
        assert out["color_by"] == "dk_cluster"
        results = ds.load_brain_results("dk_pca")
        assert set(results.sample_ids) == set(view.values("id"))
        assert ds.get_brain_info("dk_pca").config.clustering_run_key == "dk"

        info = api.get_clustering_run_info(ds, "dk")
        assert info["config"]["projection_keys"] == ["dk_pca"]
        assert "color_field" not in info["config"]
        assert api.list_projections(ds, "dk") == ["dk_pca"]

        with pytest.raises(ValueError, match="clustered 'emb', not 'x'"):
            api.compute_projection(
                ds, "bad", run_key="dk", embeddings_field="x", method="pca"
            )

        # deleting the run deletes the projection made from it (its points
        # are coloured by the run's field, which is gone)
        api.delete_clustering_run(ds, "dk")
        assert "dk_pca" not in api.list_projections(ds)
        assert "dk_pca" not in ds.list_brain_runs()
    finally:
        if "dk" in api.list_clustering_runs(ds):
            api.delete_clustering_run(ds, "dk")
        if "dk_pca" in ds.list_brain_runs():
            ds.delete_brain_run("dk_pca")


def test_more_than_100_clusters_get_a_colour_field(api, digits):
    ds, _ = digits
    api.compute_clusters(
        ds, "many", "emb", method="kmeans", kmeans__n_clusters=120
    )
    try:
        out = api.compute_projection(
            ds, "many_pca", run_key="many", method="pca"
        )
        assert out["color_by"] == "many_cluster_top99"
        counts = ds.count_values("many_cluster_top99")
        assert len(counts) == 100 and "other" in counts
        sizes = ds.count_values("many_cluster")
        kept = sorted(sizes, key=lambda c: (-sizes[c], int(c)))[:99]
        assert set(counts) - {"other"} == set(kept)
        assert counts["other"] == sum(
            n for c, n in sizes.items() if c not in kept
        )
        cluster, colour = ds.values(["many_cluster", "many_cluster_top99"])
        assert all(b in (a, "other") for a, b in zip(cluster, colour))

        config = api.get_clustering_run_info(ds, "many")["config"]
        assert config["color_field"] == "many_cluster_top99"
        assert "many_cluster_top99" in config["fields"]
        assert config["projection_keys"] == ["many_pca"]

        # a second projection reuses the field
        api.compute_projection(ds, "many_pca2", run_key="many", method="pca")
        config = api.get_clustering_run_info(ds, "many")["config"]
        assert config["fields"].count("many_cluster_top99") == 1
        assert config["projection_keys"] == ["many_pca", "many_pca2"]
    finally:
        api.delete_clustering_run(ds, "many")
        for key in ("many_pca", "many_pca2"):
            if key in ds.list_brain_runs():
                ds.delete_brain_run(key)
    assert not ds.has_field("many_cluster_top99")


def test_interrupted_write_leaves_nothing(api, digits):
    ds, _ = digits
    api.compute_clusters(
        ds, "intr", "emb", method="kmeans", kmeans__n_clusters=110
    )
    try:
        before = snapshot(ds)

        def progress(fraction, label=None):
            if label == "saved points":
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            api.compute_projection(
                ds, "intr_pca", run_key="intr", method="pca", progress=progress
            )
        assert snapshot(ds) == before
        assert not ds.has_field("intr_cluster_top99")
    finally:
        api.delete_clustering_run(ds, "intr")


# --- bad input ---------------------------------------------------------------


BAD = [
    (dict(embeddings_field="nope"), "has no field 'nope'"),
    (dict(), "pass embeddings_field"),
    (dict(run_key="norun"), "no clustering run 'norun'"),
    (dict(embeddings_field="emb", method="isomap"), "Choose one of"),
    (
        dict(embeddings_field="emb", umap__n_neighbors=80),
        "The view has 60 samples, not more than umap__n_neighbors=80",
    ),
    (
        dict(embeddings_field="emb", umap__min_dist=2.0),
        "umap__min_dist' must be <= 1",
    ),
]


@pytest.mark.parametrize("kwargs,message", BAD)
def test_bad_input_writes_nothing(api, small_ds, kwargs, message):
    ds, _ = small_ds
    before = snapshot(ds)
    with pytest.raises(ValueError, match=message):
        api.compute_projection(ds, "proj", **kwargs)
    assert snapshot(ds) == before


def test_taken_or_invalid_brain_key(api, small_ds):
    ds, _ = small_ds
    api.compute_projection(ds, "taken", embeddings_field="emb", method="pca")
    before = snapshot(ds)
    with pytest.raises(ValueError, match="'taken' is already taken"):
        api.compute_projection(ds, "taken", embeddings_field="emb")
    with pytest.raises(ValueError, match="is not valid"):
        api.compute_projection(ds, "not a key", embeddings_field="emb")
    assert snapshot(ds) == before


def test_mixed_vector_lengths(api, small_ds):
    ds, _ = small_ds
    sample = ds.first()
    sample["emb"] = np.zeros(7, np.float32)
    sample.save()
    before = snapshot(ds)
    with pytest.raises(ValueError, match="vectors of different lengths"):
        api.compute_projection(ds, "mixed", embeddings_field="emb")
    assert snapshot(ds) == before


# --- operator ----------------------------------------------------------------


def test_operator_from_python(small_ds):
    from fiftyone.operators.executor import ExecutionError

    ds, _ = small_ds
    op = foo.get_operator(f"{URI}/compute_projection")
    doc = op.__call__.__doc__
    for name in ("brain_key", "embeddings_field", "run_key", "method"):
        assert name in doc
    assert "delegate" in doc
    res = op(ds, brain_key="viaop", embeddings_field="emb", method="pca")
    assert res.error is None, res.error
    assert res.result["n_samples"] == 60
    assert "viaop" in ds.list_brain_runs(type=fob.Visualization)

    # the form marks a taken key invalid, so the App never runs it
    with pytest.raises(ExecutionError, match="'viaop' is already taken"):
        op(ds, brain_key="viaop", embeddings_field="emb", method="pca")


def test_operator_delegation(small_ds):
    from fiftyone.operators.delegated import DelegatedOperationService

    ds, _ = small_ds
    op = foo.get_operator(f"{URI}/compute_projection")
    res = op(
        ds,
        brain_key="later",
        embeddings_field="emb",
        method="pca",
        delegate=True,
    )
    assert res.delegated
    assert "later" not in ds.list_brain_runs()
    DelegatedOperationService().execute_queued_operations(
        dataset_name=ds.name, limit=1
    )
    ds.reload()
    assert "later" in ds.list_brain_runs(type=fob.Visualization)


def test_form_is_generated_from_the_schema(small_ds, api, core):
    from fiftyone.operators.executor import resolve_type

    ds, _ = small_ds

    def form(params):
        resolved = asyncio.run(
            resolve_type(
                foo.OperatorRegistry(),
                f"{URI}/compute_projection",
                {
                    "dataset_name": ds.name,
                    "params": params,
                    "target": "inputs",
                },
            )
        )
        return resolved.to_json()["type"]["properties"]

    props = form({})
    for p in core.PROJECTIONS.get("umap").params:
        assert f"umap__{p.name}" in props
    assert "tsne__perplexity" not in props
    assert set(props["method"]["type"]["values"]) == {"umap", "pca", "tsne"}
    assert "embeddings_field" in props and "run_key" not in props
    assert "delegate" in props

    props = form({"method": "tsne", "tsne__perplexity": 500})
    assert "tsne__perplexity" in props and "umap__n_neighbors" not in props
    assert props["tsne__perplexity"]["invalid"] is True

    api.compute_projection(ds, "taken", embeddings_field="emb", method="pca")
    props = form({"brain_key": "taken"})
    assert props["brain_key"]["invalid"] is True

    api.compute_clusters(ds, "r", "emb", method="kmeans", kmeans__n_clusters=3)
    props = form({})
    assert props["source"]["default"] == "run"
    assert "run_key" in props and "embeddings_field" not in props
    props = form({"source": "field"})
    assert "embeddings_field" in props and "run_key" not in props
