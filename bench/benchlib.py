"""What the benchmarks share: this checkout's paths, loading its modules
by path (the ``core`` package under a private name, a sibling benchmark,
the test harness), the plugin's API as FiftyOne loads it, a case run in
a fresh process, and the peak memory and stage times of a call.

The benchmarks run as scripts (``python bench/<name>.py``), so this folder
is first on ``sys.path`` and ``import benchlib`` finds this module."""

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN_MODULE = "fiftyone.plugins.orgs.curate.clustering"


def load(name, path):
    """The Python file ``path`` imported as the module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def core(*modules, root=REPO, package="_curate_core"):
    """Modules of ``root``'s ``core`` package (no fiftyone import), the
    package imported under the private name ``package``; one module, or a
    list of them."""
    if package not in sys.modules:
        path = os.path.join(root, "core", "__init__.py")
        spec = importlib.util.spec_from_file_location(
            package, path, submodule_search_locations=[os.path.dirname(path)]
        )
        sys.modules[package] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[package])
    out = [importlib.import_module(f"{package}.{m}") for m in modules]
    return out[0] if len(out) == 1 else out


def sibling(name):
    """The benchmark ``bench/<name>.py`` as a module."""
    return load(f"_{name}", os.path.join(REPO, "bench", name + ".py"))


def harness():
    """``tests/harness.py``: a private mongod for a benchmark's database."""
    return load("harness", os.path.join(REPO, "tests", "harness.py"))


def plugin_api(operator="compute_clusters"):
    """The plugin's ``api`` package as FiftyOne loads the plugin (getting
    one of its operators loads it)."""
    import fiftyone.operators as foo

    foo.get_operator(f"@curate/clustering/{operator}")
    return importlib.import_module(PLUGIN_MODULE + ".api")


def link_plugin(folder=None):
    """Points FiftyOne's plugins directory at this checkout, whatever
    plugins are installed (call it before fiftyone is imported)."""
    import tempfile

    folder = folder or tempfile.mkdtemp(prefix="curate-bench-plugins-")
    os.makedirs(folder, exist_ok=True)
    os.symlink(REPO, os.path.join(folder, "curate-clustering"))
    os.environ["FIFTYONE_PLUGINS_DIR"] = folder
    return folder


def insert_samples(ds, X, **columns):
    """Inserts one sample per row of ``X`` into ``ds`` in bulk documents
    (20,000 at a time): ``emb`` the row, plus the values of ``columns``
    (one list or array per field, declared by the caller)."""
    from datetime import datetime

    from bson import Binary, ObjectId

    import fiftyone.core.utils as fou

    now = datetime.utcnow()
    for s in range(0, len(X), 20_000):
        docs = [
            {
                "_id": ObjectId(),
                "filepath": f"/bench/{i}.jpg",
                "tags": [],
                "metadata": None,
                "created_at": now,
                "last_modified_at": now,
                "_media_type": "image",
                "_dataset_id": ds._doc.id,
                "emb": Binary(fou.serialize_numpy_array(X[i])),
                **{k: v[i] for k, v in columns.items()},
            }
            for i in range(s, min(len(X), s + 20_000))
        ]
        ds._sample_collection.insert_many(docs, ordered=False)


def run_child(script, *args):
    """Runs the benchmark ``script`` with ``args`` in a fresh process (a
    timed case per process: peak memory and numba's compilation are its
    own); returns the JSON of its ``RESULT`` line, or exits with its
    stderr."""
    proc = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        print(proc.stderr[-3000:])
        raise SystemExit(f"{os.path.basename(script)} {args} failed")
    return json.loads(line[0][len("RESULT ") :])


def vm_hwm_mb():
    """Peak resident memory of this process (VmHWM), in MB. Unlike
    ``ru_maxrss``, it is not inherited from the parent across exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Stages:
    """Times between the progress labels of a call: pass it as the call's
    ``progress``."""

    def __init__(self):
        self.marks = [("reading", time.perf_counter())]

    def __call__(self, fraction, label=None):
        label = (label or "").split(":")[0].strip()
        if label and self.marks[-1][0] != label:
            self.marks.append((label, time.perf_counter()))

    def timings(self, end):
        """Seconds per label, the last one up to ``end``."""
        out = {}
        ends = self.marks[1:] + [("end", end)]
        for (label, t), nxt in zip(self.marks, ends):
            out[label] = round(out.get(label, 0) + nxt[1] - t, 2)
        return out
