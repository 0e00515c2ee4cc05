"""Silent wrong results and raw errors that users hit, each now a correct
result or one clear error with the dataset left as it was."""

import numpy as np
import pytest
from PIL import Image

import fiftyone as fo
import fiftyone.brain as fob


def blobs(n=90, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, d)) * 6
    return (centers[np.arange(n) % 3] + rng.normal(size=(n, d))).astype(
        np.float32
    )


def make_dataset(name, n=90, paths=None):
    ds = fo.Dataset(name)
    paths = paths or [f"/nonexistent/{i}.png" for i in range(n)]
    ds.add_samples([fo.Sample(filepath=p) for p in paths])
    ds.set_values("emb", list(blobs(len(paths))))
    return ds


def state(ds):
    ds.reload()
    docs = list(
        ds._sample_collection.find({}, {"last_modified_at": 0}).sort("_id")
    )
    return (
        sorted(ds.get_field_schema(include_private=True)),
        sorted(ds.list_runs()),
        sorted(ds.list_brain_runs()),
        docs,
    )


@pytest.fixture
def ds(dataset_name, plugin):
    return make_dataset(dataset_name)


@pytest.mark.parametrize(
    "kwargs",
    [dict(normalize="no"), dict(skip_missing="no"), dict(normalize=1)],
)
def test_booleans_must_be_booleans(api, ds, kwargs):
    before = state(ds)
    with pytest.raises(api.InputError, match="must be True or False"):
        api.compute_clusters(ds, "r", "emb", method="kmeans", **kwargs)
    assert state(ds) == before


def test_patches_views_are_refused_up_front(api, ds):
    ds.set_values(
        "boxes",
        [
            fo.Detections(detections=[fo.Detection(bounding_box=[0, 0, 1, 1])])
            for _ in range(len(ds))
        ],
    )
    before = state(ds)
    with pytest.raises(api.InputError, match="not on patches"):
        api.compute_clusters(ds.to_patches("boxes"), "r", "emb")
    assert state(ds) == before
    # the key is free
    api.compute_clusters(ds, "r", "emb", method="kmeans", kmeans__n_clusters=3)


def test_a_view_with_repeated_samples_is_refused(api, ds):
    view = ds.limit(30).concat(ds.limit(10))
    assert len(view) == 40
    before = state(ds)
    with pytest.raises(api.InputError, match="10 samples more than once"):
        api.compute_clusters(view, "r", "emb", method="kmeans")
    assert state(ds) == before


@pytest.mark.parametrize(
    "values, match",
    [
        ([["a", "b"]] * 90, "not a numeric vector"),
        ([[1e300, 1.0]] * 90, "not a numeric vector|infinite"),
    ],
)
def test_fields_that_are_not_vectors(api, ds, values, match):
    ds.set_values("other", values)
    before = state(ds)
    with pytest.raises(api.InputError, match=match):
        api.compute_clusters(ds, "r", "other", method="kmeans")
    assert state(ds) == before


def test_an_edit_after_the_cluster_field_was_renamed(api, ds):
    api.compute_clusters(ds, "r", "emb", method="kmeans", kmeans__n_clusters=3)
    ds.rename_sample_field("r_cluster", "mine")
    before = state(ds)
    for edit in (
        lambda: api.rename_cluster(ds, "r", "0", "cats"),
        lambda: api.merge_clusters(ds, "r", ["0", "1"]),
        lambda: api.tag_cluster(ds, "r", "0", "t"),
        lambda: api.cluster_view(ds, "r", "0"),
    ):
        with pytest.raises(api.InputError, match="no longer on dataset"):
            edit()
    assert state(ds) == before


def test_deleting_a_run_deletes_its_projections(api, ds):
    api.compute_clusters(
        ds,
        "r",
        "emb",
        method="kmeans",
        kmeans__n_clusters=3,
        projection_brain_key="r_umap",
    )
    fob.compute_visualization(
        ds, embeddings="emb", method="pca", brain_key="mine", progress=False
    )
    api.delete_clustering_run(ds, "r")
    assert ds.list_brain_runs() == ["mine"]  # the user's own stays


@pytest.mark.parametrize("key", ["   ", "\t"])
def test_a_blank_api_key_is_refused(api, ds, key):
    api.compute_clusters(ds, "r", "emb", method="kmeans", kmeans__n_clusters=3)
    before = state(ds)
    with pytest.raises(api.InputError, match="blank"):
        api.label_clusters(ds, "r", api_key=key, base_url="http://127.0.0.1:9")
    assert state(ds) == before


def test_16_bit_pngs_are_scaled_not_clipped(api, dataset_name, tmp_path):
    path = str(tmp_path / "deep.png")
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    ds = make_dataset(dataset_name, paths=[path])
    api.compute_embeddings(
        ds, "px", model="pixels", pixels__size=16, progress=False
    )
    v = np.asarray(ds.first()["px"])
    # the ramp's mean, 0.5 of the range; clipping at 255 gave 0.999
    assert v.mean() == pytest.approx(0.5, abs=0.02)


def test_overwrite_with_another_dimension_leaves_one_dimension(
    api, dataset_name, tmp_path
):
    paths = []
    for i in range(4):
        p = str(tmp_path / f"{i}.png")
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(p)
        paths.append(p)
    ds = make_dataset(dataset_name, paths=paths)
    api.compute_embeddings(
        ds, "px", model="pixels", pixels__size=8, progress=False
    )
    with open(paths[0], "wb") as f:  # this file is now unreadable
        f.write(b"not an image")
    out = api.compute_embeddings(
        ds,
        "px",
        model="pixels",
        pixels__size=16,
        overwrite=True,
        progress=False,
    )
    assert out["failed"] == 1
    dims = {np.asarray(v).size for v in ds.values("px") if v is not None}
    assert dims == {16 * 16 * 3}
    assert ds.exists("px").count() == 3


@pytest.mark.parametrize("weights", ["/etc/passwd", "/etc/hostname"])
def test_a_file_that_is_not_a_checkpoint(api, dataset_name, tmp_path, weights):
    path = str(tmp_path / "a.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)
    ds = make_dataset(dataset_name, paths=[path])
    before = state(ds)
    with pytest.raises(Exception, match="is not a checkpoint file") as e:
        api.compute_embeddings(
            ds,
            "e",
            model="torchvision",
            torchvision__weights=weights,
            progress=False,
        )
    assert type(e.value).__name__ == "WeightsError"
    assert state(ds) == before


@pytest.mark.parametrize(
    "method, params, same",
    [
        ("hdbscan", dict(hdbscan__min_cluster_size=500), False),
        ("dbscan", dict(dbscan__eps=1e-6), False),
        ("hdbscan", dict(), True),
    ],
)
def test_every_sample_noise_is_said_with_the_numbers(
    api, ds, method, params, same
):
    if same:  # identical vectors
        ds.set_values("emb", [np.ones(8, np.float32)] * len(ds))
    before = state(ds)
    with pytest.raises(
        api.InputError, match=f"Every sample is noise: {method} .* 90"
    ):
        api.compute_clusters(
            ds, "r", "emb", method=method, reduce="none", **params
        )
    assert state(ds) == before
