"""Batched tensor decoding (core/gpu_decode.py), run on CPU tensors: what
the embedding loop does on a CUDA device with the device as a parameter.

- which files go to the batched decoder and which to the per-file path
  (PNGs, CMYK and EXIF-rotated JPEGs, truncated and corrupt files);
- batches keep the order of the paths, and report unreadable files at
  their positions;
- the vectors agree with the per-file PIL path within cosine 0.999 for
  every embedder whose preprocessing is covered: pixels (RGB and
  greyscale), open_clip ViT-B-32 (resize of the shortest side, centre
  crop, mean/std) and torchvision ResNet-50 (its weights' preset).
"""

import io

import numpy as np
import pytest
from PIL import Image


def _photo(i, size):
    """A natural image from skimage, resized to ``size``."""
    import skimage.data as skd

    names = ("astronaut", "coffee", "chelsea", "rocket")
    img = Image.fromarray(getattr(skd, names[i % len(names)])())
    return img.convert("RGB").resize(size, Image.BICUBIC)


def _exif_rotated(img):
    """JPEG bytes of ``img`` with EXIF orientation 6 (turn 90 degrees)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


def _without_segment(data, marker):
    """JPEG bytes without their segments of ``marker`` (0xDB: the
    quantisation tables, which every decoder needs)."""
    out, i = bytearray(data[:2]), 2
    while i < len(data):
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if data[i + 1] == 0xDA:  # start of scan: the rest is image data
            return bytes(out + data[i:])
        if data[i + 1] != marker:
            out += data[i : i + 2 + length]
        i += 2 + length
    return bytes(out)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Image files of every kind, by name."""
    d = tmp_path_factory.mktemp("decode")
    out = {}
    for i in range(6):  # JPEGs of a few sizes
        path = str(d / f"photo{i}.jpg")
        _photo(i, (200 + 40 * (i % 3), 150 + 20 * (i % 2))).save(
            path, quality=90
        )
        out[f"jpeg{i}"] = path
    gray = _photo(1, (180, 140)).convert("L")
    out["gray"] = str(d / "gray.jpg")
    gray.save(out["gray"], quality=90)
    out["png"] = str(d / "photo.png")
    _photo(2, (160, 200)).save(out["png"])
    out["cmyk"] = str(d / "cmyk.jpg")
    _photo(3, (120, 100)).convert("CMYK").save(out["cmyk"], quality=90)
    out["rotated"] = str(d / "rotated.jpg")
    with open(out["rotated"], "wb") as f:
        f.write(_exif_rotated(_photo(0, (160, 120))))
    with open(out["jpeg0"], "rb") as f:
        data = f.read()
    out["truncated"] = str(d / "truncated.jpg")
    with open(out["truncated"], "wb") as f:
        f.write(data[: len(data) // 2])
    out["corrupt"] = str(d / "corrupt.jpg")
    with open(out["corrupt"], "wb") as f:  # complete, but no tables
        f.write(_without_segment(data, 0xDB))
    out["text"] = str(d / "notes.jpg")
    with open(out["text"], "w") as f:
        f.write("not an image")
    out["missing"] = str(d / "missing.jpg")
    return out


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_which_files_are_decoded_in_batches(core_package, files):
    gd = core_package.gpu_decode
    for name in ("jpeg0", "jpeg3", "gray", "corrupt"):
        assert gd.batchable_jpeg(_read(files[name])), name
    # per file: other formats, CMYK, turned by EXIF, incomplete
    for name in ("png", "cmyk", "rotated", "truncated", "text"):
        assert not gd.batchable_jpeg(_read(files[name])), name
    head = gd.jpeg_header(_read(files["rotated"]))
    assert head == {"components": 3, "bits": 8, "orientation": 6}
    assert gd.jpeg_header(_read(files["cmyk"]))["components"] == 4
    assert gd.jpeg_header(b"") is None


def test_one_bad_file_does_not_fail_its_batch(core_package, files):
    """A batch call that fails is retried file by file: the good files
    are decoded, the bad one is returned as its error."""
    import torch

    gd = core_package.gpu_decode
    names = ("jpeg0", "corrupt", "gray")
    datas = [
        torch.frombuffer(bytearray(_read(files[n])), dtype=torch.uint8)
        for n in names
    ]
    out = gd.decode_jpegs(datas, "cpu")
    assert out[0].shape == (3, 150, 200) and out[0].dtype == torch.uint8
    assert isinstance(out[1], Exception)
    assert out[2].shape == (3, 140, 180)  # greyscale comes out RGB


def test_unknown_preprocessing_is_not_covered(core_package):
    import torchvision.transforms as T

    gd = core_package.gpu_decode
    assert gd.batch_transform(lambda img: img) is None
    random = T.Compose([T.RandomCrop(8), T.ToTensor()])
    assert gd.batch_transform(random) is None
    assert (
        gd.batch_transform(T.Compose([T.Resize(8), T.ToTensor()])) is None
    )  # no crop: images of different shapes cannot be stacked
    assert gd.batch_transform(T.Compose([T.Resize(8, max_size=9)])) is None
    ok = T.Compose([T.Resize(8), T.CenterCrop(8), T.ToTensor()])
    assert gd.batch_transform(ok) is not None


def test_decode_choice(core_package):
    import torch

    el = core_package.embed_loop
    emb = core_package.embedders.EMBEDDERS.get("pixels")().load("cpu")
    cpu = torch.device("cpu")
    assert el.tensor_transform(emb, cpu, "auto") is None
    assert el.tensor_transform(emb, cpu, "pil") is None
    assert el.tensor_transform(emb, cpu, "tensor") is not None
    with pytest.raises(ValueError, match="decode must be one of"):
        el.tensor_transform(emb, cpu, "gpu")


def test_batches_keep_order_and_report_failures(core_package, files):
    """Mixed files in batches of 4: rows come in the paths' order, the
    per-file path decodes what the batched decoder does not take, and the
    unreadable files are reported at their positions with the reason the
    per-file path gives."""
    gd = core_package.gpu_decode
    emb = core_package.embedders.EMBEDDERS.get("pixels")(size=8).load("cpu")
    order = (
        "jpeg0 png text jpeg1 cmyk missing rotated jpeg2 truncated gray "
        "corrupt jpeg3"
    ).split()
    paths = [files[n] for n in order]
    batches = gd.TensorBatches(
        paths, 4, emb.batch_transform(), emb.transform_, "cpu", threads=3
    )
    rows, errors = [], {}
    for indices, batch, errs in batches:
        assert batch.shape == (len(indices), 8 * 8 * 3)
        assert indices == sorted(indices)
        rows.extend(zip(indices, batch))
        errors.update(errs)
    bad = {"text", "missing", "truncated", "corrupt"}
    assert [i for i, _ in rows] == [
        i for i, n in enumerate(order) if n not in bad
    ]
    assert sorted(errors) == [i for i, n in enumerate(order) if n in bad]
    assert "No such file" in errors[order.index("missing")]
    assert "UnidentifiedImageError" in errors[order.index("text")]
    assert batches.decoded_on_device == 5  # jpeg0-3 and gray
    assert batches.decoded_per_file == 3  # png, cmyk, rotated
    # each row is that file's own vector
    for i, row in rows:
        want = emb.transform_(core_package.images.load_rgb(paths[i]))
        assert np.abs(row.numpy() - want.numpy()).max() <= 2 / 255, order[i]


def _vectors(core_package, emb, paths, decode):
    out = {}
    emb.embed(
        core_package.embedders.EmbedJob(
            paths,
            num_workers=0,
            batch_size=4,
            skip_failures=False,
            decode=decode,
            on_chunk=lambda i, v: out.update(zip(i.tolist(), v)),
        )
    )
    return np.stack([out[i] for i in range(len(paths))])


def _cosines(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Random weights saved as local files (no download)."""
    import open_clip
    import torch
    import torchvision

    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    clip = str(d / "vit_b_32.pt")
    torch.save(
        open_clip.create_model("ViT-B-32", pretrained=None).state_dict(), clip
    )
    resnet = str(d / "resnet50.pt")
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), resnet)
    return {"open_clip": clip, "torchvision": resnet}


@pytest.mark.parametrize(
    "name, params",
    [
        ("pixels", {"size": 16}),
        ("pixels", {"size": 32, "color": "grayscale"}),
        ("open_clip", {"arch": "ViT-B-32"}),
        ("torchvision", {"arch": "resnet50"}),
    ],
    ids=["pixels", "pixels-grayscale", "open_clip", "torchvision"],
)
def test_batched_vectors_agree_with_the_per_file_path(
    core_package, files, checkpoints, name, params
):
    """Every covered embedder: the vectors of JPEGs decoded and
    preprocessed as batched tensors are within cosine 0.999 of those of
    the per-file PIL path; files the batched decoder does not take (PNG,
    CMYK, EXIF-rotated) come out identical."""
    emb_cls = core_package.embedders.EMBEDDERS.get(name)
    if name == "open_clip":
        params = dict(params, pretrained=checkpoints[name])
    elif name == "torchvision":
        params = dict(params, weights=checkpoints[name])
    emb = emb_cls(**params).load("cpu", "float32")
    assert emb.batch_transform() is not None
    names = [f"jpeg{i}" for i in range(6)]
    names += ["gray", "png", "cmyk", "rotated"]
    paths = [files[n] for n in names]
    per_file = _vectors(core_package, emb, paths, "pil")
    batched = _vectors(core_package, emb, paths, "tensor")
    assert batched.shape == per_file.shape
    cos = _cosines(per_file, batched)
    assert cos.min() >= 0.999, dict(zip(names, cos.round(5)))
    for k in (names.index("png"), names.index("rotated")):
        np.testing.assert_array_equal(batched[k], per_file[k])
