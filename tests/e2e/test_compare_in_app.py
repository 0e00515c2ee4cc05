"""End to end in a real browser: keeping clusters up with the dataset in
the cluster explorer (issue 15). A k-means run with stability on 40 of 50
samples shows its Stability column and filters to its dissolving
clusters; assign_clusters, run from its form (opened by the panel), puts
the 10 others into the run and the Assigned column appears; the
comparison with another run shows ARI/AMI, the verdicts, the flows and a
map of them, and clicks on a cell of the map, a flow row and a verdict
row show the samples that moved in the grid. Driven by
``tests/e2e/compare.mjs``; the
App server, Chromium and Playwright come from the fixtures of
``tests/e2e/test_browser.py``.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from fiftyone import ViewField as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "out")

pytestmark = pytest.mark.slow


def _browser_harness():
    """tests/e2e/test_browser.py, loaded once under a name of its own (its
    fixtures and dataset are shared, not copied)."""
    name = "curate_e2e_browser_harness"
    if name not in sys.modules:
        path = os.path.join(HERE, "test_browser.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_harness = _browser_harness()
chromium_path = _harness.chromium_path
playwright_dir = _harness.playwright_dir
app_server = _harness.app_server
make_color_dataset = _harness.make_color_dataset


def _drive(config, out, server_log):
    t0 = time.time()
    proc = subprocess.run(
        ["node", os.path.join(HERE, "compare.mjs"), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=420,
    )
    os.makedirs(OUT, exist_ok=True)
    for shot in sorted(os.listdir(out)):
        if shot.endswith(".png"):
            shutil.copy(out / shot, os.path.join(OUT, shot))
    detail = (
        f"browser driver exit {proc.returncode} after "
        f"{time.time() - t0:.0f} s\nstderr:\n{proc.stderr[-5000:]}\n"
        f"server log:\n{server_log.read_text()[-3000:]}"
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, detail
    return json.loads(lines[-1]), detail


def step(report, name):
    assert name not in report["errors"], report["errors"][name]
    assert name in report["steps"], f"the driver stopped before {name}"
    return report["steps"][name]


def test_keeping_clusters_in_the_app(
    api, dataset_name, tmp_path, chromium_path, playwright_dir, app_server
):
    images = tmp_path / "images"
    images.mkdir()
    ds = make_color_dataset(dataset_name, str(images))
    ds.persistent = True
    ds.take(10, seed=3).tag_samples("new")
    api.compute_clusters(
        ds, "coarse", "emb", method="kmeans", kmeans__n_clusters=3
    )
    # six clusters of five colours: a colour split in two dissolves
    api.compute_clusters(
        ds.match_tags("new", bool=False),
        "hues",
        "emb",
        method="kmeans",
        kmeans__n_clusters=6,
        stability_resamples=8,
    )
    table = api.get_cluster_table(ds, "hues")["clusters"]
    stability = {r["id"]: r["stability"] for r in table}
    dissolving = sorted(c for c, v in stability.items() if v < 0.6)

    url, server_log = app_server
    out = tmp_path / "shots"
    out.mkdir()
    config = dict(
        url=f"{url}/datasets/{dataset_name}",
        playwrightDir=playwright_dir,
        chromium=chromium_path,
        outDir=str(out),
        total=len(ds),
        otherRun="coarse",
    )
    report, detail = _drive(config, out, server_log)
    ds.reload()
    failures = [report["error"]] if "error" in report else []
    checks = (
        (check_stability, (stability, dissolving)),
        (check_assign, (ds,)),
        (check_comparison, (api, ds)),
        (check_clicks, (ds,)),
    )
    for check, args in checks:
        try:
            check(report, *args)
        except AssertionError as e:
            failures.append(f"{check.__name__}: {e}")
    assert not failures, "\n\n".join(failures) + "\n\n" + detail


def check_stability(report, stability, dissolving):
    """The Stability column, with words, and the dissolving filter."""
    shown = step(report, "stability")
    assert "Stability" in shown["headers"], shown["headers"]
    assert "Assigned" not in shown["headers"]
    col = shown["headers"].index("Stability")
    cells = {r[0]: r[col] for r in shown["rows"]}
    assert set(cells) == set(stability), cells
    for cid, value in stability.items():
        assert cells[cid].startswith(f"{value:.2f}"), (cid, cells[cid])
        if value > 0.85:
            assert cells[cid].endswith("stable"), cells[cid]
        if value < 0.6:
            assert cells[cid].endswith("dissolving"), cells[cid]
    filtered = step(report, "dissolving")
    assert f"({len(dissolving)}, < 0.6)" in filtered["label"], filtered
    assert sorted(r[0] for r in filtered["rows"]) == dissolving, filtered
    assert filtered["rows_after"] == len(stability)


def check_assign(report, ds):
    """assign_clusters from its form: the result, then the column."""
    shown = step(report, "assign")
    assert "hues" in shown["form"], shown["form"]
    assert "Assigned 10 new samples to run 'hues'" in shown["result"]
    assert "hues_novel" in shown["result"]
    assert len(ds.match_tags("new").exists("hues_cluster")) == 10
    col = shown["headers"].index("Assigned")
    assigned = {r[0]: r[col] for r in shown["rows"]}
    values = ds.match_tags("new").count_values("hues_cluster")
    for cid, n in values.items():
        key = "-1 (noise)" if cid == "-1" else cid
        assert assigned[key] == str(n), (assigned, values)


def check_comparison(report, api, ds):
    """ARI/AMI, verdicts, flows and the map of the flows."""
    shown = step(report, "compare")
    out = api.compare_clustering_runs(ds, "hues", "coarse")
    assert f"ARI {out['ari']:.3f}" in shown["text"], shown["text"]
    assert f"AMI {out['ami']:.3f}" in shown["text"]
    assert f"on {len(ds)} shared samples" in shown["text"]
    verdicts = shown["verdicts"]
    assert verdicts["headers"][:4] == ["Run", "Cluster", "Size", "Verdict"]
    assert {(r[0], r[1], r[3]) for r in verdicts["rows"]} == {
        ("hues" if c["run"] == "a" else "coarse", c["id"], c["verdict"])
        for c in out["clusters"]
    }
    assert "merged" in {r[3] for r in verdicts["rows"]}
    flows = shown["flows"]["rows"]
    assert [(r[0], r[1], int(r[2])) for r in flows] == [
        (f["a"], f["b"], f["count"]) for f in out["flows"]
    ]
    # the map: a heatmap cell per flow, with its count, a row per
    # cluster of 'hues', a column per cluster of 'coarse'
    shown_map = shown["map"]
    assert shown_map["types"] == ["heatmap", "heatmap"], shown_map
    assert (shown_map["ytitle"], shown_map["xtitle"]) == ("hues", "coarse")
    assert sorted(shown_map["rows"]) == sorted(ds.distinct("hues_cluster"))
    assert sorted(shown_map["cols"]) == sorted(ds.distinct("coarse_cluster"))
    cells = {(c["row"], c["col"]): c["count"] for c in shown_map["cells"]}
    assert cells == {(f["a"], f["b"]): f["count"] for f in out["flows"]}
    assert any(c["trace"].startswith("moved") for c in shown_map["cells"])


def check_clicks(report, ds):
    """A cell of the map, a flow row and a verdict row show the samples
    that moved."""
    clicked = step(report, "map_click")
    cell = clicked["cell"]
    expected = ds.match(
        (F("hues_cluster") == cell["row"])
        & (F("coarse_cluster") == cell["col"])
    )
    assert clicked["grid"] == cell["count"] == len(expected), clicked
    assert "The grid shows" in clicked["note"], clicked
    what = (
        f"cluster {cell['row']} of 'hues' that are in cluster "
        f"{cell['col']} of 'coarse'"
    )
    assert what in clicked["note"], clicked
    flow = step(report, "flow_row")
    a, b, n = flow["row"][0], flow["row"][1], int(flow["row"][2])
    expected = ds.match((F("hues_cluster") == a) & (F("coarse_cluster") == b))
    assert flow["grid"] == n == len(expected), flow
    noun = "sample" if n == 1 else "samples"
    assert f"The grid shows {n} {noun}" in flow["note"], flow
    verdict = step(report, "verdict_row")
    moved = int(verdict["row"][6])
    assert moved > 0 and verdict["grid"] == moved, verdict
    run, cid, best = verdict["row"][0], verdict["row"][1], verdict["row"][4]
    other = "coarse" if run == "hues" else "hues"
    expected = ds.match(
        (F(f"{run}_cluster") == cid)
        & (F(f"{other}_cluster") != best)
        & F(f"{other}_cluster").exists()
    )
    assert len(expected) == moved, (verdict, len(expected))
