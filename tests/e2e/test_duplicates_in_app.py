"""End to end in a real browser: near duplicates and balanced subsets from
the cluster explorer (issue 14). "Find duplicates" opens the form with the
run preset; its nearest-neighbour histogram (Plotly) and example pairs
(thumbnails through the App's ``/media`` route) must render; running it
adds the Duplicates column; the groups show side by side in the grid; the
histogram shows in the panel too; "Select N" runs select_subset and the
grid shows the subset. Driven by ``tests/e2e/duplicates.mjs``; the App
server, Chromium and Playwright come from the fixtures of
``tests/e2e/conftest.py``.
"""

import os
import shutil

import numpy as np
import pytest

import fiftyone as fo
from fiftyone import ViewField as F

pytestmark = pytest.mark.slow


FAMILIES = ((200, 60, 60), (60, 170, 70), (60, 80, 210), (220, 200, 60))
# (original, near copy) and (original, byte copy) pairs
NEAR = ((0, 1), (13, 2), (25, 3), (37, 4), (6, 5), (18, 7))
EXACT = ((30, 8), (44, 9))


def make_dup_dataset(name, folder, per_family=12):
    """Images of four colour families, each a 4x4 grid of colours around
    its family's (upscaled to 64x64 PNG), with the grid as the embedding;
    six near copies (the grid plus a little noise) and two byte copies
    planted. Returns the dataset and the planted pairs of sample ids."""
    from PIL import Image

    rng = np.random.default_rng(14)
    grids = []
    for base in FAMILIES:
        for _ in range(per_family):
            g = np.array(base) + rng.normal(0, 45, (4, 4, 3))
            grids.append(np.clip(g, 0, 255))
    paths = []
    for i, g in enumerate(grids):
        path = os.path.join(folder, f"img_{i:03d}.png")
        image = Image.fromarray(g.astype(np.uint8)).resize((64, 64), 0)
        image.save(path)
        paths.append(path)
    emb = [(g / 127.5 - 1).ravel() for g in grids]
    for k, (a, _) in enumerate(NEAR):
        g = np.clip(grids[a] + rng.normal(0, 1.0, grids[a].shape), 0, 255)
        path = os.path.join(folder, f"near_{k}.png")
        Image.fromarray(g.astype(np.uint8)).resize((64, 64), 0).save(path)
        paths.append(path)
        emb.append((g / 127.5 - 1).ravel())
    for k, (a, _) in enumerate(EXACT):
        path = os.path.join(folder, f"copy_{k}.png")
        shutil.copy(paths[a], path)
        paths.append(path)
        emb.append(emb[a])
    ds = fo.Dataset(name)
    ds.add_samples([fo.Sample(filepath=p) for p in paths])
    ds.set_values("emb", [e.astype(np.float32) for e in emb])
    ids = ds.values("id")
    n = len(grids)
    planted = [(ids[a], ids[n + k]) for k, (a, _) in enumerate(NEAR)]
    planted += [
        (ids[a], ids[n + len(NEAR) + k]) for k, (a, _) in enumerate(EXACT)
    ]
    return ds, planted


def test_duplicates_and_subsets_from_the_explorer(
    api, dataset_name, tmp_path, browser
):
    images = tmp_path / "images"
    images.mkdir()
    ds, planted = make_dup_dataset(dataset_name, str(images))
    ds.persistent = True
    api.compute_clusters(
        ds, "km", "emb", method="kmeans", kmeans__n_clusters=4
    )
    pv = api.duplicate_threshold_preview(ds, "emb", "km")
    n_subset = 12
    report, detail = browser(
        "duplicates.mjs",
        ds,
        timeout=480,
        dupKey="dups",
        inGroups=2 * len(planted),
        n=n_subset,
    )
    assert "error" not in report and not report["errors"], detail
    steps = report["steps"]
    ds.reload()

    # the form: the histogram as bars, the counts, the example pairs
    find = steps["find"]
    nonzero = sum(1 for c in pv["histogram"]["count"] if c)
    drawn = [b for b in find["bars"] if b["height"] > 0]
    assert len(drawn) == nonzero, (find["bars"], pv["histogram"])
    blue = [b for b in drawn if b["fill"] == "rgb(44, 123, 229)"]
    assert 0 < len(blue) < len(drawn), drawn  # copies apart from the bulk
    assert f"Suggested threshold: {pv['suggested']:.4g}" in find["form"]
    assert f"of {len(ds)}" in find["form"]  # counts per threshold
    pairs = pv["examples"]["above"] + pv["examples"]["below"]
    thumbs = find["thumbs"]
    assert len(thumbs) == 2 * len(pairs) >= 6, thumbs
    assert all(t["loaded"] and t["width"] == 64 for t in thumbs), thumbs
    # the two images of a pair side by side
    for a, b in zip(thumbs[::2], thumbs[1::2]):
        assert a["top"] == b["top"] and b["left"] > a["left"], (a, b)
    assert find["field"] == "emb"  # preset from the run

    # ran at the suggested threshold: every planted pair grouped
    groups = dict(zip(*ds.values(["id", "dups_group"])))
    for a, b in planted:
        assert groups[a] is not None and groups[a] == groups[b], (a, b)
    n_groups = len(planted)
    assert f"{n_groups} groups of duplicates among {len(ds)}" in (
        find["result"]
    )
    not_kept = ds.match(F("dups_keep") == False)  # noqa: E712
    assert len(not_kept) == n_groups

    # the Duplicates column, once the run exists
    assert "Duplicates" not in " ".join(report["before"]["headers"])
    column = steps["column"]
    heads = column["headers"]
    at = next(i for i, h in enumerate(heads) if h.startswith("Duplicates"))
    per_cluster = not_kept.count_values("km_cluster")
    shown = {r[0]: int(r[at]) for r in column["rows"]}
    assert shown == {c: per_cluster.get(c, 0) for c in shown}, shown
    assert f"{n_groups} groups ({2 * n_groups} samples)" in column["text"]

    # the groups side by side in the grid
    # (the label follows the icon's name)
    assert steps["groups"]["label"].endswith(
        f"Show {n_groups} duplicate groups"
    )
    assert steps["groups"]["count"] == 2 * n_groups

    # the histogram in the panel, with the run's threshold and the pairs
    hist = steps["histogram"]
    assert len([b for b in hist["bars"] if b["height"] > 0]) == nonzero
    assert "Run dups used threshold" in hist["text"], hist["text"]
    assert hist["thumbs"] and all(t["loaded"] for t in hist["thumbs"])

    # a cluster's groups
    cg = steps["cluster_groups"]
    n = int(cg["label"].split("(")[1].split()[0])
    assert cg["count"] == n > 0
    assert cg["still_selected"], cg

    # Select N: the form preset with the run and the duplicates run, the
    # subset in the grid
    select = steps["select"]
    assert "km" in select["form"] and "dups" in select["form"]
    # each cluster's share is shared among 3 k-means parts by default
    assert "Parts per cluster" in select["form"], select["form"]
    assert select["parts"] == "3", select
    # and says what to do about a kind split over two clusters
    assert "merge them first" in select["form"], select["form"]
    assert f"Subset of {n_subset} samples" in select["result"]
    assert select["count"] == n_subset
    subset = ds.load_saved_view("km subset")
    assert len(subset) == n_subset
    record = api.get_clustering_run_info(ds, "km")["actions"]["select_subset"]
    assert record["config"]["sub_clusters"] == 3, record
    assert len(subset.match(F("dups_keep") == False)) == 0  # noqa: E712
