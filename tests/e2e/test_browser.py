"""End to end in a real browser: the App server on 127.0.0.1, headless
Chromium driven by Playwright (``tests/e2e/explorer.mjs``), and the cluster
explorer panel opened from the App's "+" menu.

The driver clicks every row and a bar, types into a selected cluster's
actions and selects another, merges two clusters (confirming), switches
between an HDBSCAN and a k-means run, renames a cluster to an HTML payload,
computes a new run from the panel's form and reloads the page; it reports
what the App showed after each step, and the test checks it against the
database: the grid shows the clicked cluster, the actions sit right below
its row and start empty, merging asks first and leaves one row and bar per
cluster, no row or bar of another run remains, and a label is text.

Chromium, Playwright and the App server come from the fixtures of
``tests/e2e/conftest.py``, which installs what is missing or skips with
the reason. Screenshots are copied to ``tests/out/`` for people to look
at.
"""

import pytest

from fiftyone import ViewField as F

from browser_driver import failed_checks, step

pytestmark = pytest.mark.slow

PAYLOAD = "<img src=x onerror=alert(1)>"
MD_PAYLOAD = "![x](x) **bold** [a link](https://example.com)"


def ids_of(shown):
    """Cluster ids of the rows a step saw."""
    return [r[0].replace(" (noise)", "") for r in shown["rows"]]


@pytest.fixture
def explored(api, color_dataset, browser):
    """The demo dataset with a k-means run 'hues' and an HDBSCAN run
    'shades' (with noise), driven through the panel in the App."""
    ds = color_dataset
    api.compute_clusters(
        ds, "hues", "emb", method="kmeans", kmeans__n_clusters=4
    )
    api.compute_clusters(
        ds,
        "shades",
        "emb",
        method="hdbscan",
        reduce="none",
        normalize=False,
        hdbscan__min_cluster_size=4,
    )
    shades = ds.count_values("shades_cluster")
    assert "-1" in shades and len(shades) == 6, shades
    sizes = {
        "hues": ds.count_values("hues_cluster"),
        "shades": dict(shades),
    }
    report, detail = browser(
        "explorer.mjs",
        ds,
        timeout=540,
        runs=["shades"],
        otherRun="hues",
        # rows of each run after the merge
        expected={"hues": 4, "shades": 5},
        rename=PAYLOAD,
        renameMarkdown=MD_PAYLOAD,
        newRun=dict(run_key="fresh", method="K-means", n_clusters=3),
    )
    ds.reload()
    return ds, sizes, report, detail


def test_explorer_in_the_app(explored):
    """Every check runs; the failure lists each one that failed."""
    ds, sizes, report, detail = explored
    assert report.get("start") == len(ds), detail
    checks = (
        check_rows_open_their_cluster,
        check_actions_next_to_the_selection,
        check_inputs_clear,
        check_merge_rows_and_bars,
        check_merge_asks_first,
        check_run_switch,
        check_escaping,
        check_new_run,
    )
    failures = failed_checks(report, checks, ds, sizes, report)
    assert not failures, "\n\n".join(failures) + "\n\n" + detail


def by_size(sizes):
    """Cluster ids, largest first, noise excluded."""
    return sorted((c for c in sizes if c != "-1"), key=lambda c: -sizes[c])


def check_rows_open_their_cluster(ds, sizes, report):
    """The panel opens on the newest run; every row and a bar show their
    cluster in the grid."""
    shades = sizes["shades"]
    order = by_size(shades)
    # one bar and row per cluster, largest first, noise last
    first = step(report, "open")
    assert first["run"] == "shades"
    assert ids_of(first) == order + ["-1"], first
    assert first["bars"] == len(first["rows"]) == 6
    assert first["x"] == order + ["noise"]
    # the compute_clusters form opened from the panel, filled in
    assert step(report, "prompt") == {"embeddings_field": "emb"}
    clicks = step(report, "rows")
    assert [c["cluster"] for c in clicks] == order + ["-1"]
    for c in clicks:
        assert "error" not in c, c
        assert c["count"] == c["size_cell"] == shades[c["cluster"]], c
    bar = step(report, "bar")
    assert bar["cluster"] == order[1]
    assert bar["count"] == shades[order[1]], bar
    assert step(report, "show_all")["count"] == len(ds)


def check_actions_next_to_the_selection(ds, sizes, report):
    """The selected cluster's title and actions start right below its
    row, whichever row it is."""
    for c in step(report, "rows"):
        assert c["actions_gap"] is not None, c
        assert 0 <= c["actions_gap"] < 60, (
            f"the actions of cluster {c['cluster']} are "
            f"{c['actions_gap']} px below its row, not next to it"
        )


def check_inputs_clear(ds, sizes, report):
    """A new selection starts with empty inputs."""
    inputs = step(report, "inputs")
    assert inputs["typed"] == {"label": "draft name", "tag": "draft-tag"}
    assert inputs["after"]["cluster"] == by_size(sizes["shades"])[1]
    assert inputs["after"]["label"] == "", inputs
    assert inputs["after"]["tag"] == "", inputs
    assert inputs["after"]["merge"] == "", inputs


def check_merge_asks_first(ds, sizes, report):
    """Merging asks first, offering each cluster with its label and
    size."""
    shades = sizes["shades"]
    order = by_size(shades)
    merge = step(report, "merge")
    source, into = merge["source"], merge["into"]
    assert (source, into) == (order[-2], order[0])
    assert merge["asked"], "merging did not ask for confirmation"
    assert f"cluster {source} ({shades[source]} samples)" in (
        merge["question"]
    )
    assert f"cluster {into} ({shades[into]} samples)" in merge["question"]
    assert merge["rows_while_asked"] == merge["rows_before"] == 6
    others = [c for c in order if c != source]
    assert merge["options"] == [
        f"cluster {c} ({shades[c]} samples)" for c in others
    ], merge["options"]


def check_merge_rows_and_bars(ds, sizes, report):
    """After a merge the header, chart and table agree: one cluster
    fewer, the merged-into one selected, nothing merged away shown."""
    merge = step(report, "merge")
    into = merge["into"]
    after = merge["after"]
    merged = merged_sizes(sizes, report)
    assert ds.count_values("shades_cluster") == merged
    assert len(after["rows"]) == len(merged), (
        f"{len(after['rows'])} rows for {len(merged)} clusters: "
        f"{after['rows']}"
    )
    assert sorted(ids_of(after)) == sorted(merged), after
    assert after["bars"] == len(merged), after
    assert after["x"] == [r[0].split()[0] for r in after["rows"]][:-1] + [
        "noise"
    ]
    assert after["selected_bars"] == [into], after
    assert merge["count"] == merge["size"] == merged[into]


def merged_sizes(sizes, report):
    """The HDBSCAN run's cluster sizes after the merge."""
    merge = report["steps"]["merge"]
    merged = {c: n for c, n in sizes["shades"].items() if c != merge["source"]}
    merged[merge["into"]] += sizes["shades"][merge["source"]]
    return merged


def check_run_switch(ds, sizes, report):
    """Switching runs leaves nothing of the other run."""
    switch = step(report, "switch")
    hues = switch["hues"]
    assert hues["run"] == "hues"
    assert len(hues["rows"]) == len(sizes["hues"]), (
        f"{len(hues['rows'])} rows for the {len(sizes['hues'])} clusters "
        f"of the k-means run: {hues['rows']}"
    )
    assert sorted(ids_of(hues)) == sorted(sizes["hues"]), hues
    assert hues["bars"] == 4 and "noise" not in hues["x"], hues
    assert {r[0]: int(r[2]) for r in hues["rows"]} == sizes["hues"]
    # the grid left the other run's cluster
    assert hues["count"] == len(ds)
    back = switch["shades"]
    assert sorted(ids_of(back)) == sorted(merged_sizes(sizes, report)), back
    assert back["bars"] == 5


def check_escaping(ds, sizes, report):
    """Labels are text, never markup: an HTML label and a Markdown label
    show as typed in the table, the selected cluster's title and the
    bar's hover, and make no element and run no script."""
    assert report["dialogs"] == [], "a label ran a script"
    failures = []
    for name, payload in (
        ("rename", PAYLOAD),
        ("rename_markdown", MD_PAYLOAD),
    ):
        try:
            check_label_is_text(ds, step(report, name), payload)
        except AssertionError as e:
            failures.append(f"{payload!r}: {e}")
    assert not failures, "\n".join(failures)


def check_label_is_text(ds, rename, payload):
    """What the driver saw after renaming a cluster to ``payload``."""
    assert rename["img_elements"] == 0, f"it became an <img>: {rename}"
    assert rename["link_elements"] == 0, f"it became a link: {rename}"
    assert rename["bold_elements"] == 0, f"it became bold: {rename}"
    assert rename["row"][1] == payload, rename
    assert payload in rename["title"], rename
    assert rename["hover"] is not None, rename
    assert payload in rename["hover"], rename
    members = ds.match(F("shades_cluster") == rename["cluster"])
    assert set(members.values("shades_cluster_label")) == {payload}


def check_new_run(ds, sizes, report):
    """A run computed from the panel: its rows, no phantom, each opens;
    a page reload shows the same."""
    new = step(report, "new_run")
    fresh = ds.count_values("fresh_cluster")
    assert new["after"]["run"] == "fresh"
    assert len(new["after"]["rows"]) == len(fresh), (
        f"{len(new['after']['rows'])} rows for the {len(fresh)} clusters "
        f"of the new run: {new['after']['rows']}"
    )
    assert sorted(ids_of(new["after"])) == sorted(fresh), new["after"]
    assert new["after"]["bars"] == 3
    for c in new["clicks"]:
        assert "error" not in c, c
        assert c["count"] == c["size_cell"] == fresh[c["cluster"]], c

    reload = step(report, "reload")
    assert sorted(ids_of(reload["after"])) == sorted(fresh), reload
    assert reload["after"]["rows"] == reload["before"]["rows"]
