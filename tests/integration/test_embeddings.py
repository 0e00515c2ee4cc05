"""Embeddings into sample fields: the embedders against their reference
implementations, the API and the operator through FiftyOne, unreadable
images, resuming, and every bad input (clear error, nothing written).

Everything runs offline: open_clip and torchvision models are built with
random weights and saved as local checkpoint files, which the plugin loads
the way a user's own checkpoint loads.
"""

import importlib
import os
import time

import numpy as np
import pytest

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone.operators.executor import ExecutionError

PLUGIN_MODULE = "fiftyone.plugins.orgs.curate.clustering"
URI = "@curate/clustering/compute_embeddings"

SKIMAGE_IMAGES = ("astronaut", "coffee", "chelsea", "camera", "moon", "horse")


@pytest.fixture(scope="module")
def emb(plugin):
    """The plugin's core embedders module."""
    return importlib.import_module(PLUGIN_MODULE + ".core.embedders")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Six small PNGs (RGB and grayscale) from skimage, a corrupt file and
    a missing one."""
    import skimage.data
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    good = []
    for i, name in enumerate(SKIMAGE_IMAGES):
        arr = getattr(skimage.data, name)()
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        img = Image.fromarray(arr)
        w, h = img.size
        img = img.resize((64 + 8 * i, max(8, 64 * h // w)))
        path = str(root / f"{i}_{name}.png")
        img.save(path)
        good.append(path)
    corrupt = str(root / "corrupt.jpg")
    with open(corrupt, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    missing = str(root / "missing.png")
    return {"good": good, "corrupt": corrupt, "missing": missing}


@pytest.fixture(scope="module")
def clip_ckpt(tmp_path_factory):
    """A randomly initialised ViT-B-32 saved as a local checkpoint."""
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    path = str(tmp_path_factory.mktemp("ckpt") / "vit_b_32.pt")
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def effnet_ckpt(tmp_path_factory):
    """A randomly initialised EfficientNet-B0 saved as a state_dict file."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.efficientnet_b0(weights=None)
    path = str(tmp_path_factory.mktemp("ckpt") / "effnet_b0.pth")
    torch.save(model.state_dict(), path)
    return path


def make_dataset(name, paths):
    ds = fo.Dataset(name)
    ds.add_samples([fo.Sample(filepath=p) for p in paths])
    return ds


def vectors_by_path(ds, field):
    paths, vecs = ds.values(["filepath", field])
    return {p: v for p, v in zip(paths, vecs)}


def snapshot(ds):
    """Everything a failed run must leave as it was."""
    ds.reload()
    schema = {k: type(v).__name__ for k, v in ds.get_field_schema().items()}
    docs = list(
        ds._sample_collection.find({}, {"last_modified_at": 0}).sort("_id")
    )
    return schema, docs


# --------------------------------------------------------------------------
# Embedders against their reference implementations
# --------------------------------------------------------------------------


def test_registry_schemas_and_docs_table(emb):
    assert emb.EMBEDDERS.names() == [
        "open_clip",
        "torchvision",
        "pixels",
        "zoo",
    ]
    table = emb.EMBEDDERS.markdown_table()
    for key in (
        "open_clip__arch",
        "open_clip__pretrained",
        "torchvision__arch",
        "torchvision__weights",
        "pixels__size",
        "pixels__color",
        "zoo__name",
    ):
        assert f"`{key}`" in table
    defaults = emb.EMBEDDERS.resolve("open_clip", {})
    assert defaults == {
        "arch": "ViT-B-32",
        "pretrained": "laion2b_s34b_b79k",
    }


def test_open_clip_vectors_equal_open_clip_reference(
    api, dataset_name, images, clip_ckpt
):
    """Stored vectors equal open_clip's own preprocess + encode_image +
    normalise on the same files, through worker processes; in bfloat16 they
    point the same way."""
    import open_clip
    import torch
    from PIL import Image

    ds = make_dataset(dataset_name, images["good"])
    out = api.compute_embeddings(
        ds,
        "clip",
        open_clip__pretrained=clip_ckpt,
        precision="float32",
        batch_size=2,
        num_workers=1,
        progress=False,
    )
    assert out["precision"] == "float32"
    assert out["embedded"] == len(images["good"])
    assert out["failed"] == 0 and out["skipped"] == 0
    assert out["dim"] == 512 and out["images_per_s"] > 0

    model, _, preprocess = open_clip.create_model_and_transforms(
        "ViT-B-32", pretrained=clip_ckpt
    )
    model.eval()
    with torch.no_grad():
        batch = torch.stack(
            [preprocess(Image.open(p)) for p in ds.values("filepath")]
        )
        ref = model.encode_image(batch)
        ref = (ref / ref.norm(dim=-1, keepdim=True)).numpy()

    assert isinstance(ds.get_field("clip"), fo.VectorField)
    got = np.stack(ds.values("clip"))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)

    # The clustering side reads them as one float32 matrix
    data = importlib.import_module(PLUGIN_MODULE + ".data")
    ids, X = data.read_vectors(ds, "clip")
    assert X.dtype == np.float32 and X.shape == (len(ids), 512)

    out = api.compute_embeddings(
        ds,
        "clip_bf16",
        open_clip__pretrained=clip_ckpt,
        precision="bfloat16",
        num_workers=0,
        progress=False,
    )
    assert out["precision"] == "bfloat16"
    half = np.stack(ds.values("clip_bf16"))
    assert half.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(half, axis=1), 1, atol=1e-5)
    cosine = (half * ref).sum(axis=1)
    assert cosine.min() > 0.999, cosine
    assert not np.allclose(half, ref, atol=2e-5)  # it did run in bfloat16


def test_precision_auto_and_bad_values(
    api, dataset_name, images, emb, clip_ckpt
):
    """``auto`` runs bfloat16 on a CPU with AMX (float32 on others) and
    says so; a bad precision fails before anything is written."""
    import torch

    cpu = torch.device("cpu")
    want = torch.bfloat16 if emb.cpu_has_amx() else torch.float32
    assert emb.resolve_precision("auto", cpu) == want
    assert emb.resolve_precision(None, cpu) == want
    assert emb.resolve_precision("float32", cpu) == torch.float32
    gpu = torch.device("cuda")
    assert emb.resolve_precision("auto", gpu) == torch.float16

    ds = make_dataset(dataset_name, images["good"][:2])
    out = api.compute_embeddings(
        ds, "clip", open_clip__pretrained=clip_ckpt, progress=False
    )
    assert out["precision"] == emb.precision_name(want)
    out = api.compute_embeddings(
        ds, "px", model="pixels", pixels__size=4, progress=False
    )
    assert out["precision"] is None  # no model

    before = snapshot(ds)
    with pytest.raises(emb.ParamError, match="Unknown precision 'fp8'"):
        api.compute_embeddings(
            ds, "e", open_clip__pretrained=clip_ckpt, precision="fp8"
        )
    with pytest.raises(emb.ParamError, match="does not apply to zoo"):
        api.compute_embeddings(
            ds, "e", model="zoo", precision="bfloat16", progress=False
        )
    # The form's choices reject it first
    with pytest.raises(ExecutionError, match="precision.*Invalid enum"):
        foo.execute_operator(
            URI,
            ctx={
                "dataset": ds,
                "params": {
                    "model": "pixels",
                    "embeddings_field": "e",
                    "precision": "half",
                },
            },
        )
    assert snapshot(ds) == before


def test_compute_clusters_passes_the_embedding_options(
    api, dataset_name, images, emb, clip_ckpt
):
    """compute_clusters(model=...) embeds with the batch size, workers,
    device and precision it is given; without a model they are refused."""
    ds = make_dataset(dataset_name, images["good"])
    op = foo.get_operator("@curate/clustering/compute_clusters")
    res = op(
        ds,
        run_key="half",
        embeddings_field="clip16",
        method="kmeans",
        kmeans__n_clusters=2,
        model="open_clip",
        open_clip__pretrained=clip_ckpt,
        batch_size=2,
        num_workers=0,
        device="cpu",
        precision="bfloat16",
    )
    assert res.error is None, res.error
    assert res.result["embeddings"]["precision"] == "bfloat16"
    out = api.compute_clusters(
        ds,
        "full",
        "clip32",
        method="kmeans",
        kmeans__n_clusters=2,
        model="open_clip",
        open_clip__pretrained=clip_ckpt,
        precision="float32",
    )
    assert out["embeddings"]["precision"] == "float32"
    half = np.stack(ds.values("clip16"))
    full = np.stack(ds.values("clip32"))
    assert not np.allclose(half, full, atol=2e-5)
    assert (half * full).sum(1).min() > 0.999  # unit vectors

    before = snapshot(ds)
    with pytest.raises(ValueError, match="device='cuda'.*pass model="):
        api.compute_clusters(ds, "r", "clip32", method="kmeans", device="cuda")
    with pytest.raises(
        ValueError, match="batch_size=4, precision='float32' only apply"
    ):
        api.compute_clusters(
            ds, "r", "clip32", batch_size=4, precision="float32"
        )
    with pytest.raises(emb.ParamError, match="Unknown precision 'fp8'"):
        api.compute_clusters(
            ds,
            "r",
            "clip8",
            method="kmeans",
            model="open_clip",
            open_clip__pretrained=clip_ckpt,
            precision="fp8",
        )
    assert snapshot(ds) == before
    assert sorted(api.list_clustering_runs(ds)) == ["full", "half"]


def test_torchvision_local_weights_match_reference(
    api, dataset_name, images, effnet_ckpt
):
    import torch
    import torchvision
    from PIL import Image

    ds = make_dataset(dataset_name, images["good"][:3])
    out = api.compute_embeddings(
        ds,
        "cnn",
        model="torchvision",
        torchvision__arch="efficientnet_b0",
        torchvision__weights=effnet_ckpt,
        precision="float32",
        progress=False,
    )
    assert out["embedded"] == 3 and out["dim"] == 1280

    model = torchvision.models.efficientnet_b0(weights=None)
    model.load_state_dict(torch.load(effnet_ckpt, weights_only=True))
    model.classifier = torch.nn.Identity()
    model.eval()
    preprocess = (
        torchvision.models.EfficientNet_B0_Weights.DEFAULT.transforms()
    )
    with torch.no_grad():
        batch = torch.stack(
            [
                preprocess(Image.open(p).convert("RGB"))
                for p in ds.values("filepath")
            ]
        )
        ref = model(batch).numpy()
    np.testing.assert_allclose(np.stack(ds.values("cnn")), ref, atol=1e-4)


def test_torchvision_weights_of_another_network_are_refused(
    api, dataset_name, images, effnet_ckpt
):
    ds = make_dataset(dataset_name, images["good"][:2])
    before = snapshot(ds)
    with pytest.raises(ValueError, match="does not fit torchvision model"):
        api.compute_embeddings(
            ds,
            "cnn",
            model="torchvision",
            torchvision__arch="resnet50",
            torchvision__weights=effnet_ckpt,
        )
    assert snapshot(ds) == before


def test_pixels_embedder(api, dataset_name, images):
    from PIL import Image

    ds = make_dataset(dataset_name, images["good"])
    out = api.compute_embeddings(
        ds,
        "px",
        model="pixels",
        pixels__size=8,
        pixels__color="grayscale",
        num_workers=1,
        batch_size=2,
        progress=False,
    )
    assert out["embedded"] == 6 and out["dim"] == 64
    path = images["good"][0]
    img = Image.open(path).convert("RGB").resize((8, 8), Image.BILINEAR)
    ref = np.asarray(img.convert("L"), dtype=np.float32).ravel() / 255
    np.testing.assert_allclose(vectors_by_path(ds, "px")[path], ref)

    out = api.compute_embeddings(
        ds, "px_rgb", model="pixels", pixels__size=4, progress=False
    )
    assert out["dim"] == 48


# --------------------------------------------------------------------------
# The operator through FiftyOne
# --------------------------------------------------------------------------


def test_operator_execute_with_local_clip_checkpoint(
    dataset_name, images, clip_ckpt, plugin
):
    ds = make_dataset(dataset_name, images["good"][:3])
    result = foo.execute_operator(
        URI,
        ctx={
            "dataset": ds,
            "params": {
                "model": "open_clip",
                "open_clip__arch": "ViT-B-32",
                "open_clip__pretrained": clip_ckpt,
                "embeddings_field": "clip",
            },
        },
    )
    out = result.result
    assert out["embedded"] == 3 and out["dim"] == 512
    assert out["model"] == "open_clip"
    assert out["params"]["pretrained"] == clip_ckpt
    assert ds.exists("clip").count() == 3


def test_operator_call_from_python(dataset_name, images, plugin):
    ds = make_dataset(dataset_name, images["good"])
    op = foo.get_operator(URI)
    result = op(ds.limit(4), "px", model="pixels", pixels__size=4)
    assert result.result["embedded"] == 4
    assert ds.exists("px").count() == 4

    # Samples that have a vector are skipped
    result = op(ds, "px", model="pixels", pixels__size=4)
    assert result.result["embedded"] == 2
    assert result.result["skipped"] == 4


def test_operator_selected_samples_target(dataset_name, images, plugin):
    ds = make_dataset(dataset_name, images["good"])
    chosen = ds.values("id")[:2]
    foo.execute_operator(
        URI,
        ctx={
            "dataset": ds,
            "view": ds.view(),
            "selected": chosen,
            "params": {
                "view_target": "SELECTED_SAMPLES",
                "model": "pixels",
                "pixels__size": 4,
                "pixels__color": "rgb",
                "embeddings_field": "px",
            },
        },
    )
    assert sorted(ds.exists("px").values("id")) == sorted(chosen)


def test_operator_form_is_generated_from_schemas(dataset_name, images, plugin):
    from fiftyone.operators.executor import ExecutionContext

    ds = make_dataset(dataset_name, images["good"])
    op = foo.get_operator(URI)
    for model, keys in (
        ("open_clip", ["open_clip__arch", "open_clip__pretrained"]),
        ("torchvision", ["torchvision__arch", "torchvision__weights"]),
        ("pixels", ["pixels__size", "pixels__color"]),
        ("zoo", ["zoo__name"]),
    ):
        ctx = ExecutionContext(
            request_params={
                "dataset_name": ds.name,
                "params": {"model": model},
            }
        )
        props = op.resolve_input(ctx).type.properties
        for key in keys + [
            "model",
            "embeddings_field",
            "batch_size",
            "num_workers",
            "device",
            "precision",
            "skip_failures",
            "overwrite",
            "delegate",
        ]:
            assert key in props, (model, key)
        others = [k for k in props if "__" in k and not k.startswith(model)]
        assert others == [], others

    # An existing non-vector field is refused in the form
    ds.add_sample_field("notes", fo.StringField)
    ctx = ExecutionContext(
        request_params={
            "dataset_name": ds.name,
            "params": {"model": "pixels", "embeddings_field": "notes"},
        }
    )
    prop = op.resolve_input(ctx).type.properties["embeddings_field"]
    assert prop.invalid and "not a vector field" in prop.error_message


def test_operator_delegated_run(dataset_name, images, plugin):
    from fiftyone.operators.delegated import DelegatedOperationService

    ds = make_dataset(dataset_name, images["good"])
    op = foo.get_operator(URI)
    queued = op(ds, "px", model="pixels", pixels__size=4, delegate=True)
    assert queued.delegated
    assert not ds.has_field("px")
    DelegatedOperationService().execute_queued_operations(
        dataset_name=ds.name, limit=1
    )
    ds.reload()
    assert ds.exists("px").count() == 6


# --------------------------------------------------------------------------
# Unreadable images
# --------------------------------------------------------------------------


def test_corrupt_and_missing_files_are_skipped_and_reported(
    api, dataset_name, images
):
    paths = images["good"][:3] + [images["corrupt"], images["missing"]]
    ds = make_dataset(dataset_name, paths)
    out = api.compute_embeddings(
        ds, "px", model="pixels", num_workers=1, batch_size=2, progress=False
    )
    assert out["embedded"] == 3
    assert out["failed"] == 2
    assert sorted(out["failed_files"]) == sorted(
        [images["corrupt"], images["missing"]]
    )
    assert out["first_error"]
    have = vectors_by_path(ds, "px")
    assert have[images["corrupt"]] is None
    assert have[images["missing"]] is None
    assert all(have[p] is not None for p in images["good"][:3])


def test_corrupt_files_reported_by_the_operator(dataset_name, images, plugin):
    paths = images["good"][:2] + [images["corrupt"]]
    ds = make_dataset(dataset_name, paths)
    result = foo.get_operator(URI)(ds, "px", model="pixels")
    assert result.result["failed"] == 1
    assert result.result["failed_files"] == [images["corrupt"]]


@pytest.mark.parametrize("bad", ["corrupt", "missing"])
def test_unreadable_file_without_skip_failures_writes_nothing(
    api, dataset_name, images, bad
):
    paths = images["good"][:3] + [images[bad]] + images["good"][3:]
    ds = make_dataset(dataset_name, paths)
    before = snapshot(ds)
    emb = importlib.import_module(PLUGIN_MODULE + ".core.embedders")
    with pytest.raises(emb.ImageError) as e:
        api.compute_embeddings(
            ds,
            "px",
            model="pixels",
            skip_failures=False,
            batch_size=2,
            progress=False,
        )
    assert images[bad] in str(e.value)
    assert e.value.path == images[bad]
    assert snapshot(ds) == before

    with pytest.raises(ExecutionError, match=os.path.basename(images[bad])):
        foo.get_operator(URI)(ds, "px", model="pixels", skip_failures=False)
    assert snapshot(ds) == before


# --------------------------------------------------------------------------
# Overwrite and resume
# --------------------------------------------------------------------------


def test_existing_vectors_are_skipped_unless_overwrite(
    api, dataset_name, images
):
    ds = make_dataset(dataset_name, images["good"])
    first = ds.limit(2)
    api.compute_embeddings(
        first, "px", model="pixels", pixels__size=4, progress=False
    )
    marker = np.full(48, 7.0, dtype=np.float32)
    first.set_values("px", [marker, marker])

    out = api.compute_embeddings(
        ds, "px", model="pixels", pixels__size=4, progress=False
    )
    assert (out["embedded"], out["skipped"]) == (4, 2)
    kept = np.stack(first.values("px"))
    np.testing.assert_array_equal(kept, np.stack([marker, marker]))

    out = api.compute_embeddings(
        ds, "px", model="pixels", pixels__size=4, progress=False
    )
    assert (out["embedded"], out["skipped"]) == (0, 6)

    out = api.compute_embeddings(
        ds,
        "px",
        model="pixels",
        pixels__size=4,
        overwrite=True,
        progress=False,
    )
    assert (out["embedded"], out["skipped"]) == (6, 0)
    assert not np.any(np.stack(first.values("px")) == 7.0)


def test_interrupted_run_keeps_written_chunks_and_resumes(
    api, dataset_name, images, monkeypatch
):
    monkeypatch.setattr(api.embeddings, "_EMB_WRITE_EVERY", 2)
    ds = make_dataset(dataset_name, images["good"])

    class Stop(Exception):
        pass

    def stop_after_four(fraction, label):
        if fraction >= 4 / 6:
            raise Stop(label)

    with pytest.raises(Stop):
        api.compute_embeddings(
            ds,
            "px",
            model="pixels",
            batch_size=2,
            num_workers=0,
            progress=stop_after_four,
        )
    assert ds.exists("px").count() == 4

    labels = []
    out = api.compute_embeddings(
        ds,
        "px",
        model="pixels",
        batch_size=2,
        progress=lambda f, label: labels.append((f, label)),
    )
    assert (out["embedded"], out["skipped"]) == (2, 4)
    assert ds.exists("px").count() == 6
    assert labels[-1][0] == 1.0 and "images/s" in labels[-1][1]


def test_vector_length_mismatch_is_refused(api, dataset_name, images):
    ds = make_dataset(dataset_name, images["good"])
    api.compute_embeddings(
        ds.limit(3), "px", model="pixels", pixels__size=4, progress=False
    )
    before = snapshot(ds)
    with pytest.raises(ValueError, match="48-d vectors"):
        api.compute_embeddings(
            ds, "px", model="pixels", pixels__size=8, progress=False
        )
    assert snapshot(ds) == before


# --------------------------------------------------------------------------
# Bad input: clear errors, nothing written
# --------------------------------------------------------------------------


def test_unknown_model_and_parameters(api, dataset_name, images, emb):
    ds = make_dataset(dataset_name, images["good"][:2])
    before = snapshot(ds)
    with pytest.raises(
        emb.ParamError, match="Unknown embedder 'clipp'.*open_clip"
    ):
        api.compute_embeddings(ds, "e", model="clipp")
    with pytest.raises(emb.ParamError, match="Unknown parameter 'sise'.*size"):
        api.compute_embeddings(ds, "e", model="pixels", pixels__sise=8)
    with pytest.raises(emb.ParamError, match="pixels__size"):
        api.compute_embeddings(ds, "e", model="pixels", pixels__size=1)
    with pytest.raises(emb.ParamError, match="pixels__color"):
        api.compute_embeddings(ds, "e", model="pixels", pixels__color="cmyk")
    with pytest.raises(emb.ParamError, match="Unknown open_clip architecture"):
        api.compute_embeddings(ds, "e", open_clip__arch="ViT-B-33")
    with pytest.raises(emb.ParamError, match="Unknown pretrained tag"):
        api.compute_embeddings(ds, "e", open_clip__pretrained="laion9")
    with pytest.raises(emb.ParamError, match="Checkpoint file not found"):
        api.compute_embeddings(ds, "e", open_clip__pretrained="/no/such.pt")
    with pytest.raises(emb.ParamError, match="batch_size"):
        api.compute_embeddings(ds, "e", model="pixels", batch_size=0)

    op = foo.get_operator(URI)
    with pytest.raises(emb.ParamError, match="Unknown embedder"):
        op(ds, "e", model="clipp")
    with pytest.raises(emb.ParamError, match="Unknown parameter"):
        op(ds, "e", model="pixels", pixels__sise=8)
    with pytest.raises(ExecutionError, match="Unknown embedder 'clipp'"):
        foo.execute_operator(
            URI,
            ctx={
                "dataset": ds,
                "params": {"model": "clipp", "embeddings_field": "e"},
            },
        )
    assert snapshot(ds) == before


def test_bad_fields_and_collections(api, dataset_name, images, emb):
    ds = make_dataset(dataset_name, images["good"][:2])
    ds.add_sample_field("notes", fo.StringField)
    before = snapshot(ds)
    with pytest.raises(
        ValueError, match="'notes' exists and is a StringField"
    ):
        api.compute_embeddings(ds, "notes", model="pixels")
    with pytest.raises(ValueError, match="field name"):
        api.compute_embeddings(ds, "2 bad", model="pixels")
    assert snapshot(ds) == before

    box = [0.1, 0.1, 0.5, 0.5]
    ds.set_values(
        "gt",
        [
            fo.Detections(detections=[fo.Detection(bounding_box=box)])
            for _ in range(2)
        ],
    )
    patches = ds.to_patches("gt")
    before = snapshot(ds)
    with pytest.raises(ValueError, match="not on patches"):
        api.compute_embeddings(patches, "e", model="pixels")

    import torch

    if not torch.cuda.is_available():
        with pytest.raises(emb.ParamError, match="CUDA is not available"):
            api.compute_embeddings(ds, "e", model="pixels", device="cuda")
    with pytest.raises(emb.ParamError, match="Unknown device"):
        api.compute_embeddings(ds, "e", model="pixels", device="tpu0")
    assert snapshot(ds) == before


def test_missing_weights_fail_fast_with_a_clear_message(
    api, dataset_name, images, emb
):
    """open_clip's own loader retries for ~47 s before failing offline."""
    ds = make_dataset(dataset_name, images["good"][:2])
    before = snapshot(ds)
    start = time.perf_counter()
    with pytest.raises(emb.WeightsError) as e:
        api.compute_embeddings(ds, "clip")
    assert time.perf_counter() - start < 5
    msg = str(e.value)
    assert "laion2b_s34b_b79k" in msg and "ViT-B-32" in msg
    assert "open_clip__pretrained='/path/to/checkpoint.pt'" in msg
    assert snapshot(ds) == before

    with pytest.raises(ExecutionError, match="local checkpoint"):
        foo.get_operator(URI)(ds, "clip")
    assert snapshot(ds) == before


def test_torchvision_default_weights_fail_fast_when_not_downloadable(
    api, dataset_name, images, emb
):
    import torch

    name = "resnet50-11ad3fa6.pth"
    if os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints", name)):
        pytest.skip("ResNet-50 weights are cached here")
    if emb.host_reachable("download.pytorch.org"):
        pytest.skip("download.pytorch.org is reachable from here")
    ds = make_dataset(dataset_name, images["good"][:2])
    start = time.perf_counter()
    with pytest.raises(emb.WeightsError, match="torchvision__weights="):
        api.compute_embeddings(ds, "cnn", model="torchvision")
    assert time.perf_counter() - start < 5


def test_zoo_models(api, dataset_name, images, emb):
    import fiftyone.zoo as foz

    ds = make_dataset(dataset_name, images["good"][:2])
    before = snapshot(ds)
    with pytest.raises(ValueError, match="Unknown zoo model 'clip-vit-b'"):
        api.compute_embeddings(ds, "e", model="zoo", zoo__name="clip-vit-b")
    with_embeddings = set(foz.list_zoo_models(tags="embeddings"))
    no_embeddings = [
        n for n in foz.list_zoo_models() if n not in with_embeddings
    ]
    with pytest.raises(ValueError, match="does not expose embeddings"):
        api.compute_embeddings(
            ds, "e", model="zoo", zoo__name=no_embeddings[0]
        )

    name = "clip-vit-base32-torch"
    if foz.is_zoo_model_downloaded(name):
        pytest.skip(f"{name} is downloaded here")
    if emb.host_reachable("openaipublic.azureedge.net"):
        pytest.skip("the zoo's download server is reachable from here")
    start = time.perf_counter()
    with pytest.raises(emb.WeightsError) as e:
        api.compute_embeddings(ds, "e", model="zoo", zoo__name=name)
    assert time.perf_counter() - start < 5
    assert name in str(e.value)
    assert f"fiftyone zoo models download {name}" in str(e.value)
    assert snapshot(ds) == before


@pytest.fixture
def local_zoo(tmp_path, monkeypatch):
    """A zoo models directory holding random MobileNet-V2 weights where the
    zoo expects its download."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None)
    # The zoo checks for its manifest's file, then torchvision loads the
    # file of its DEFAULT weights from the torch hub cache
    zoo_dir = tmp_path / "zoo"
    hub_dir = tmp_path / "torch" / "hub" / "checkpoints"
    zoo_dir.mkdir()
    hub_dir.mkdir(parents=True)
    torch.save(model.state_dict(), zoo_dir / "mobilenet_v2-b0353104.pth")
    torch.save(model.state_dict(), hub_dir / "mobilenet_v2-7ebf99e0.pth")
    monkeypatch.setattr(fo.config, "model_zoo_dir", str(zoo_dir))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return "mobilenet-v2-imagenet-torch"


def test_zoo_model_runs_through_fiftyone(api, dataset_name, images, local_zoo):
    # FiftyOne fails a whole batch for one bad file: the good files of that
    # batch are retried one by one
    paths = images["good"][:1] + [images["corrupt"]] + images["good"][1:4]
    ds = make_dataset(dataset_name, paths)
    labels = []
    out = api.compute_embeddings(
        ds,
        "zoo_emb",
        model="zoo",
        zoo__name=local_zoo,
        batch_size=4,
        num_workers=0,
        progress=lambda f, label: labels.append(label),
    )
    assert out["embedded"] == 4 and out["dim"] == 1280
    assert out["failed"] == 1 and out["failed_files"] == [images["corrupt"]]
    assert ds.exists("zoo_emb").count() == 4
    assert labels and "images/s" in labels[-1]

    out = api.compute_embeddings(
        ds, "zoo_emb", model="zoo", zoo__name=local_zoo, progress=False
    )
    assert (out["embedded"], out["skipped"], out["failed"]) == (0, 4, 1)


def test_zoo_model_unreadable_file_without_skip_failures(
    api, dataset_name, images, local_zoo
):
    paths = images["good"][:2] + [images["missing"]]
    ds = make_dataset(dataset_name, paths)
    before = snapshot(ds)
    with pytest.raises(Exception) as e:
        api.compute_embeddings(
            ds,
            "zoo_emb",
            model="zoo",
            zoo__name=local_zoo,
            skip_failures=False,
            progress=False,
        )
    assert "missing.png" in str(e.value)
    assert snapshot(ds) == before


def test_every_embedder_runs_through_embed(
    api, dataset_name, images, emb, local_zoo, monkeypatch
):
    """The zoo embedder is registered with the others but defined above
    core, and the API runs a core embedder and the zoo alike: through
    ``Embedder.embed(job)``."""
    import torch
    from PIL import Image

    zoo = emb.EMBEDDERS.get("zoo")
    assert issubclass(zoo, emb.Embedder)
    assert zoo.__module__ == PLUGIN_MODULE + ".api.zoo"
    for cls in emb.EMBEDDERS.classes():
        if cls is not zoo:
            assert cls.__module__.startswith(PLUGIN_MODULE + ".core."), cls
            assert cls.embed is emb.Embedder.embed  # embed_paths
    assert not hasattr(emb.Embedder, "in_core")

    calls = []

    class Tiny(emb.Embedder):
        """Width and height of each image."""

        name = "tiny"
        label = "Tiny"
        description = "Image sizes."
        uses_model = False

        def build(self, device):
            self.transform_ = lambda img: torch.tensor(img.size) / 100

        def forward(self, x):
            return x

        def embed(self, job):
            calls.append(("tiny", job.ids, job.samples.count()))
            return super().embed(job)

    monkeypatch.setitem(emb.EMBEDDERS._classes, "tiny", Tiny)
    ds = make_dataset(dataset_name, images["good"][:3])
    out = api.compute_embeddings(
        ds, "tiny", model="tiny", num_workers=0, progress=False
    )
    assert out["embedded"] == 3 and out["dim"] == 2
    assert calls == [("tiny", ds.values("id"), 3)]
    sizes = [Image.open(p).size for p in ds.values("filepath")]
    np.testing.assert_allclose(
        np.stack(ds.values("tiny")), np.array(sizes) / 100, rtol=1e-6
    )

    zoo_embed = zoo.embed

    def spy(self, job):
        calls.append(("zoo", job.ids, job.samples.count()))
        return zoo_embed(self, job)

    monkeypatch.setattr(zoo, "embed", spy)
    out = api.compute_embeddings(
        ds, "z", model="zoo", zoo__name=local_zoo, progress=False
    )
    assert out["embedded"] == 3 and out["dim"] == 1280
    assert calls[-1] == ("zoo", ds.values("id"), 3)
    assert ds.exists("z").count() == 3


CACHED_TAG_SCRIPT = """
import importlib, json, sys, time
import fiftyone.operators as foo
foo.get_operator("@curate/clustering/compute_embeddings")
emb = importlib.import_module(
    "fiftyone.plugins.orgs.curate.clustering.core.embedders"
)
start = time.perf_counter()
X = emb.embed_files(
    "open_clip", sys.argv[1:], device="cpu", precision="float32"
)
print("RESULT " + json.dumps(
    {"seconds": time.perf_counter() - start, "X": X.tolist()}
))
"""


def test_cached_pretrained_tag_loads_offline_without_retries(
    emb, images, clip_ckpt, tmp_path, test_env
):
    """A tag whose weights are in the Hugging Face cache loads at once when
    the hub cannot be reached, even without HF_HUB_OFFLINE (open_clip alone
    would retry for ~47 s first)."""
    import json
    import shutil
    import subprocess
    import sys

    import open_clip
    import torch
    from PIL import Image

    if emb.host_reachable("huggingface.co"):
        pytest.skip("huggingface.co is reachable from here")
    repo = tmp_path / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    snapshot_dir = repo / "snapshots" / ("0" * 40)
    snapshot_dir.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    shutil.copy(clip_ckpt, snapshot_dir / "open_clip_pytorch_model.bin")

    env = {
        k: v
        for k, v in test_env.items()
        if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env["HF_HUB_CACHE"] = str(tmp_path)
    paths = images["good"][:2]
    proc = subprocess.run(
        [sys.executable, "-c", CACHED_TAG_SCRIPT, *paths],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[0][len("RESULT ") :])
    assert out["seconds"] < 30

    model, _, preprocess = open_clip.create_model_and_transforms(
        "ViT-B-32", pretrained=clip_ckpt
    )
    model.eval()
    with torch.no_grad():
        ref = model.encode_image(
            torch.stack([preprocess(Image.open(p)) for p in paths])
        )
        ref = torch.nn.functional.normalize(ref, dim=1).numpy()
    np.testing.assert_allclose(np.array(out["X"]), ref, atol=2e-5)
