"""The plugin the way users run it, through the real ``fiftyone`` CLI.

- ``fiftyone plugins download <archive URL>`` from an HTTP server on
  127.0.0.1 serving an archive of this working tree, then ``fiftyone plugins
  list``, ``fiftyone plugins requirements`` and ``fiftyone operators list``
  against the installed copy, and the Python API imported in a fresh
  process.
- Operations queued from Python (``delegate=True`` and
  ``request_delegation=True``) and run by ``fiftyone delegated launch``: one
  completes with its run, fields and progress; one fails with its error and
  writes nothing; one is killed half-way and leaves the dataset as it was,
  and after ``fiftyone delegated fail`` the same run key runs again.
"""

import asyncio
import importlib
import inspect
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile

import numpy as np
import pytest
import yaml
from packaging.requirements import Requirement

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionRunState

REPO = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)
PLUGIN = "@curate/clustering"
CLUSTERS = f"{PLUGIN}/compute_clusters"
CLUSTERING_OPERATORS = (
    "compute_clusters",
    "get_clustering_run_info",
    "rename_clustering_run",
    "delete_clustering_run",
)
TERMINAL = (ExecutionRunState.COMPLETED, ExecutionRunState.FAILED)


def _manifest():
    with open(os.path.join(REPO, "fiftyone.yml")) as f:
        return yaml.safe_load(f)


def _fiftyone_cli():
    path = os.path.join(sysconfig.get_path("scripts"), "fiftyone")
    if os.path.isfile(path):
        return path
    found = shutil.which("fiftyone")
    assert found, "the `fiftyone` command is not installed"
    return found


def _cli(args, env, timeout=180):
    """Runs ``fiftyone <args>`` and returns its output; fails on an error
    exit status."""
    p = subprocess.run(
        [_fiftyone_cli(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"fiftyone {' '.join(args)} failed:\n{out}"
    return out


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port, proc, timeout=30):
    deadline = time.time() + timeout
    while True:
        assert proc.poll() is None, "the HTTP server exited at start"
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            assert time.time() < deadline, "the HTTP server did not start"
            time.sleep(0.05)


def _repo_files():
    """The files of the working tree that git would ship: tracked and
    untracked ones, not ignored ones (so no virtualenv or caches)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout.decode()
        paths = sorted({p for p in out.split("\0") if p})
    except (OSError, subprocess.CalledProcessError):
        paths = []
        for root, dirs, files in os.walk(REPO):
            dirs[:] = [
                d for d in dirs if not d.startswith(".") and d != "__pycache__"
            ]
            for name in files:
                full = os.path.join(root, name)
                paths.append(os.path.relpath(full, REPO))
    return [
        p
        for p in paths
        if not any(part.startswith(".") for part in p.split("/")[:-1])
        and os.path.isfile(os.path.join(REPO, p))
    ]


def _build_archive(path, top="clustering-main"):
    """Zips the working tree under one top folder, as GitHub archives
    are."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for rel in _repo_files():
            z.write(os.path.join(REPO, rel), f"{top}/{rel}")


@pytest.fixture
def archive_url(tmp_path):
    """The URL of an archive of this working tree, served over HTTP on
    127.0.0.1."""
    www = tmp_path / "www"
    www.mkdir()
    _build_archive(str(www / "clustering-main.zip"))
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(www),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, proc)
        yield f"http://127.0.0.1:{port}/clustering-main.zip"
    finally:
        proc.terminate()
        proc.wait(10)


_IMPORT_CHECK = r"""
import importlib, json
import fiftyone.operators as foo
import fiftyone.plugins as fop

MODULE = "fiftyone.plugins.orgs.curate.clustering"
out = {"plugins": [p.name for p in fop.list_plugins()]}
try:
    importlib.import_module(MODULE + ".api")
    out["after_list_plugins"] = True
except ImportError:
    out["after_list_plugins"] = False
foo.get_operator("@curate/clustering/compute_clusters")
from fiftyone.plugins.orgs.curate.clustering import api
out["api_file"] = api.__file__
out["api_functions"] = sorted(
    name for name in dir(api)
    if not name.startswith("_") and callable(getattr(api, name))
)
from fiftyone.plugins.context import build_plugin_contexts
out["errors"] = [
    e for c in build_plugin_contexts() if c.name == "@curate/clustering"
    for e in c.errors
]
print("RESULT " + json.dumps(out))
"""


def test_download_from_archive_url(archive_url, test_env, tmp_path):
    """`fiftyone plugins download URL` installs the plugin with all its
    operators and requirements file, and its API imports in a fresh
    process."""
    manifest = _manifest()
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    env = dict(test_env, FIFTYONE_PLUGINS_DIR=str(plugins_dir))

    _cli(["plugins", "download", archive_url], env)
    installed = plugins_dir / "@curate" / "clustering"
    for rel in (
        "fiftyone.yml",
        "__init__.py",
        "api/__init__.py",
        "requirements.txt",
    ):
        assert (installed / rel).is_file(), rel
    assert not (installed / ".venv").exists()

    out = _cli(["plugins", "list"], env)
    assert PLUGIN in out

    # The requirements file is read the way `--install` reads it: one
    # `pip install <line>` per line, so every line must be a requirement
    with open(installed / "requirements.txt") as f:
        lines = [
            line.split("#")[0].strip()
            for line in f
            if line.split("#")[0].strip()
        ]
    names = {Requirement(line).name for line in lines}
    assert {"torch", "torchvision", "scikit-learn", "fiftyone"} <= names
    assert not any(line.startswith("-") for line in lines)
    out = _cli(["plugins", "requirements", PLUGIN, "--print", "--ensure"], env)
    for line in lines:
        assert line in out.splitlines(), (line, out)

    out = _cli(
        ["operators", "list", "--no-builtins", "--include-unlisted"], env
    )
    listed = {w for w in out.split() if w.startswith(PLUGIN + "/")}
    for name in CLUSTERING_OPERATORS:
        assert f"{PLUGIN}/{name}" in listed, out
    missing = [
        name
        for name in manifest["operators"] + manifest.get("panels", [])
        if f"{PLUGIN}/{name}" not in listed
    ]
    assert not missing, f"not registered: {missing}\n{out}"

    # The plain API, in a fresh process, from the installed copy
    p = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    result = json.loads(line[-1][len("RESULT ") :])
    assert PLUGIN in result["plugins"]
    assert not result["errors"], result["errors"]
    assert os.path.realpath(result["api_file"]).startswith(
        os.path.realpath(str(installed))
    )
    assert "compute_clusters" in result["api_functions"]
    # Listing plugins does not load them: the API is importable once an
    # operator was looked up (what docs/usage.md says)
    assert result["after_list_plugins"] is False


# --------------------------------------------------------------------------
# Delegated runs
# --------------------------------------------------------------------------

N = 3000
DIM = 32


def _make_dataset(name, image_dir, n_images=24):
    """``N`` samples with 4 blobs of embeddings in ``emb``; the first
    ``n_images`` have real image files."""
    from PIL import Image

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, DIM)).astype(np.float32) * 4
    X = centers[rng.integers(0, 4, N)] + rng.normal(size=(N, DIM)).astype(
        np.float32
    )
    paths = []
    for i in range(N):
        if i < n_images:
            path = os.path.join(image_dir, f"{i}.png")
            pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path)
        else:
            path = f"/nonexistent/{i}.jpg"
        paths.append(path)
    dataset = fo.Dataset(name)
    dataset.add_samples([fo.Sample(filepath=p) for p in paths])
    dataset.set_values("emb", list(X.astype(np.float32)))
    return dataset


def _state(dataset):
    """What a failed or interrupted run must leave untouched."""
    dataset.reload()
    schema = {
        name: type(field).__name__
        for name, field in dataset.get_field_schema().items()
    }
    return schema, sorted(dataset.list_runs())


def _wait(service, op_ids, until, launcher, log_path, timeout=240):
    """Polls the delegated operations until ``until(doc)`` holds for every
    one of them."""
    deadline = time.time() + timeout
    while True:
        docs = {i: service.get(i) for i in op_ids}
        if all(until(d) for d in docs.values()):
            return docs
        if launcher is not None and launcher.poll() is not None:
            with open(log_path) as f:
                pytest.fail(f"the launcher exited:\n{f.read()[-3000:]}")
        if time.time() > deadline:
            with open(log_path) as f:
                log = f.read()[-3000:]
            states = {
                str(i): (d.run_state, d.status and d.status.label)
                for i, d in docs.items()
            }
            pytest.fail(f"timed out waiting: {states}\n{log}")
        time.sleep(0.25)


def _launch(env, log_path):
    """Starts `fiftyone delegated launch` in a process group of its own."""
    log = open(log_path, "w")
    return subprocess.Popen(
        [_fiftyone_cli(), "delegated", "launch"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _kill(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def test_delegated_runs_with_the_cli_launcher(
    plugin, api, test_env, dataset_name, tmp_path
):
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    dataset = _make_dataset(dataset_name, str(image_dir))
    service = DelegatedOperationService()
    compute = foo.get_operator(CLUSTERS)
    before = _state(dataset)
    log_path = str(tmp_path / "launcher.log")

    # Queued from Python, on a view: nothing runs yet
    view = dataset.limit(N - 100)
    queued = compute(
        view,
        run_key="good",
        embeddings_field="emb",
        method="kmeans",
        kmeans__n_clusters=4,
        delegate=True,
    )
    assert queued.delegated
    good_id = queued.result["id"]
    # request_delegation=True is honoured on a small view too. The form
    # refuses a field that does not exist before anything is queued, so
    # this one goes away after queueing: only the run can find out
    dataset.clone_sample_field("emb", "no_such_field")
    queued = foo.execute_operator(
        CLUSTERS,
        dict(view=dataset.view()),
        params=dict(
            run_key="bad",
            embeddings_field="no_such_field",
            method="kmeans",
            kmeans__n_clusters=4,
        ),
        request_delegation=True,
    )
    assert queued.delegated
    bad_id = queued.result["id"]
    dataset.delete_sample_field("no_such_field")
    # Another heavy operator, whose images are read by worker processes
    queued = foo.get_operator(f"{PLUGIN}/compute_embeddings")(
        dataset.limit(24),
        embeddings_field="px",
        model="pixels",
        pixels__size=8,
        delegate=True,
    )
    assert queued.delegated
    px_id = queued.result["id"]
    for op_id in (good_id, bad_id, px_id):
        assert service.get(op_id).run_state == ExecutionRunState.QUEUED
    assert _state(dataset) == before

    launcher = _launch(test_env, log_path)
    try:
        docs = _wait(
            service,
            [good_id, bad_id, px_id],
            lambda d: d.run_state in TERMINAL,
            launcher,
            log_path,
        )

        # The good one: run, fields and progress
        good = docs[good_id]
        assert good.run_state == ExecutionRunState.COMPLETED, good.result
        assert good.status.progress == 1.0
        assert good.status.label == "done"
        dataset.reload()
        assert api.list_clustering_runs(dataset) == ["good"]
        info = api.get_clustering_run_info(dataset, "good")
        assert info["config"]["n_samples"] == N - 100
        assert info["statistics"]["n_clusters"] == 4
        assert dataset.exists("good_cluster").count() == N - 100
        assert set(dataset.distinct("good_cluster")) == {"0", "1", "2", "3"}
        summary = good.result.result
        assert summary["n_clusters"] == 4
        assert summary["n_samples"] == N - 100

        px = docs[px_id]
        assert px.run_state == ExecutionRunState.COMPLETED, px.result
        assert px.status.progress == 1.0
        assert dataset.exists("px").count() == 24
        vectors = dataset.limit(24).values("px")
        assert all(v.shape == (8 * 8 * 3,) for v in vectors)

        # The bad one: failed with the message, nothing written
        bad = docs[bad_id]
        assert bad.run_state == ExecutionRunState.FAILED
        assert "has no field 'no_such_field'" in bad.result.error
        schema, runs = _state(dataset)
        assert "bad" not in runs
        assert "bad_cluster" not in schema
        assert "bad_distance" not in schema

        # A long one (HDBSCAN after a UMAP reduction, whose numba code the
        # fresh worker compiles first: 10 s or more), killed with its worker
        # 0.5 s after it starts reducing
        before = _state(dataset)
        queued = compute(
            dataset,
            run_key="slow",
            embeddings_field="emb",
            method="hdbscan",
            delegate=True,
        )
        slow_id = queued.result["id"]
        _wait(
            service,
            [slow_id],
            lambda d: d.run_state == ExecutionRunState.RUNNING
            and d.status is not None
            and d.status.label not in (None, "reading"),
            launcher,
            log_path,
        )
        time.sleep(0.5)
        doc = service.get(slow_id)
        assert doc.run_state == ExecutionRunState.RUNNING
        assert doc.status.label not in ("writing", "done")
    finally:
        _kill(launcher)

    assert _state(dataset) == before
    samples = dataset._sample_collection
    assert samples.count_documents({"slow_cluster": {"$exists": True}}) == 0
    leftovers = [
        c
        for c in samples.database.list_collection_names()
        if c.startswith(samples.name + "_tmp_")
    ]
    assert not leftovers

    # The dead worker's operation still reads RUNNING, with its progress
    out = _cli(["delegated", "list", "--dataset", dataset_name], test_env)
    rows = {line.split()[0]: line for line in out.splitlines() if line}
    assert "completed" in rows[str(good_id)]
    assert "failed" in rows[str(bad_id)]
    assert "running (" in rows[str(slow_id)], out

    # Mark it failed; the same run key and field are free for a new run
    _cli(["delegated", "fail", str(slow_id)], test_env)
    assert service.get(slow_id).run_state == ExecutionRunState.FAILED
    queued = compute(
        dataset,
        run_key="slow",
        embeddings_field="emb",
        method="kmeans",
        kmeans__n_clusters=50,
        delegate=True,
    )
    results = service.execute_queued_operations(dataset_name=dataset_name)
    assert len(results) == 1
    again = service.get(queued.result["id"])
    assert again.run_state == ExecutionRunState.COMPLETED, again.result
    dataset.reload()
    assert sorted(api.list_clustering_runs(dataset)) == ["good", "slow"]
    assert dataset.exists("slow_cluster").count() == N
    assert len(dataset.distinct("slow_cluster")) == 50


# --------------------------------------------------------------------------
# The delegation choice
# --------------------------------------------------------------------------


# Context keys the App sends with every request, and Python does not
APP_KEYS = dict(filters={}, extended=None, sample_selection_style={})


def _options(dataset, params, uri=CLUSTERS, **request):
    """The execution options the App is offered, as its server resolves
    them (with ``app=False``: those of a request from Python)."""
    from fiftyone.operators.executor import resolve_execution_options
    from fiftyone.operators.registry import OperatorRegistry

    app = APP_KEYS if request.pop("app", True) else {}
    request_params = dict(
        dataset_name=dataset.name, view=[], params=params, **app, **request
    )
    return asyncio.run(
        resolve_execution_options(OperatorRegistry(), uri, request_params)
    )


def _delegate_default(dataset, params):
    from fiftyone.operators.executor import resolve_type
    from fiftyone.operators.registry import OperatorRegistry

    request_params = dict(dataset_name=dataset.name, view=[], params=params)
    prop = asyncio.run(
        resolve_type(OperatorRegistry(), CLUSTERS, request_params)
    )
    return prop.type.properties["delegate"].default


def test_delegation_choice_follows_the_form_and_view_size(
    plugin, dataset_name, monkeypatch
):
    """The form's checkbox decides, its default depends on the view size,
    and the App is offered the one matching button."""
    common = importlib.import_module(plugin.__name__ + ".operators._common")
    dataset = fo.Dataset(dataset_name)
    dataset.add_samples(
        [fo.Sample(filepath=f"/nonexistent/{i}.jpg") for i in range(30)]
    )
    dataset.set_values("emb", list(np.eye(30, 4, dtype=np.float32)))
    params = dict(run_key="r", embeddings_field="emb", method="kmeans")

    opts = _options(dataset, params)
    assert opts.allow_immediate_execution
    assert not opts.allow_delegated_execution
    assert _delegate_default(dataset, params) is False

    opts = _options(dataset, dict(params, delegate=True))
    assert opts.allow_delegated_execution
    assert not opts.allow_immediate_execution

    # The App's "Schedule" (or request_delegation=True) is never overridden
    opts = _options(dataset, params, request_delegation=True)
    assert opts.allow_delegated_execution

    # Larger than the threshold: delegated by default in the App's form,
    # still a choice; from Python, it runs now unless asked
    monkeypatch.setitem(common.DELEGATION_THRESHOLD, "compute_clusters", 10)
    opts = _options(dataset, params)
    assert opts.allow_delegated_execution
    assert not opts.allow_immediate_execution
    assert _delegate_default(dataset, params) is True
    opts = _options(dataset, params, app=False)
    assert opts.allow_immediate_execution
    assert not opts.allow_delegated_execution
    opts = _options(dataset, dict(params, delegate=False))
    assert opts.allow_immediate_execution
    assert not opts.allow_delegated_execution

    # Every heavy operator offers the same choice
    for name in common.DELEGATION_THRESHOLD:
        uri = f"{PLUGIN}/{name}"
        config = foo.get_operator(uri).config
        assert config.allow_delegated_execution, name
        assert config.allow_immediate_execution, name
        opts = _options(dataset, dict(delegate=True), uri)
        assert opts.allow_delegated_execution, name
        assert not opts.allow_immediate_execution, name
        opts = _options(dataset, dict(delegate=False), uri)
        assert opts.allow_immediate_execution, name
        assert not opts.allow_delegated_execution, name


def test_python_call_immediate_and_documented(plugin, api, dataset_name):
    """``foo.get_operator(uri)(dataset, ...)`` runs at once by default, and
    every operator's ``__call__`` documents its parameters."""
    dataset = fo.Dataset(dataset_name)
    dataset.add_samples(
        [fo.Sample(filepath=f"/nonexistent/{i}.jpg") for i in range(40)]
    )
    rng = np.random.default_rng(1)
    dataset.set_values(
        "emb", list(rng.normal(size=(40, 8)).astype(np.float32))
    )
    result = foo.get_operator(CLUSTERS)(
        dataset,
        run_key="now",
        embeddings_field="emb",
        method="kmeans",
        kmeans__n_clusters=3,
    )
    assert not result.delegated
    assert result.result["n_clusters"] == 3
    assert api.list_clustering_runs(dataset) == ["now"]

    for name in _manifest()["operators"]:
        call = type(foo.get_operator(f"{PLUGIN}/{name}")).__call__
        doc = inspect.getdoc(call)
        assert doc and "Args:" in doc, name
        params = [
            p.name
            for p in list(inspect.signature(call).parameters.values())[1:]
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        undocumented = [p for p in params if f"{p} (" not in doc]
        undocumented = [
            p for p in undocumented if not re.search(rf"^\s*{p}:", doc, re.M)
        ]
        assert not undocumented, (name, undocumented)
