"""Tests of ``core/`` on plain arrays and files: no database, and no
``fiftyone`` import (``core`` never imports it, and nothing here does).

``core/`` is imported on its own, as the package :data:`CORE`, so these
tests run without the plugin being loaded through FiftyOne.
"""

import importlib
import importlib.util
import os
import sys

import pytest

REPO = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)
CORE = "curate_core"


def _load_core():
    if CORE not in sys.modules:
        path = os.path.join(REPO, "core", "__init__.py")
        spec = importlib.util.spec_from_file_location(
            CORE, path, submodule_search_locations=[os.path.dirname(path)]
        )
        sys.modules[CORE] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[CORE])
    return sys.modules[CORE]


class _Core:
    """Attribute access to the submodules of the standalone ``core``."""

    def __getattr__(self, name):
        return importlib.import_module(f"{CORE}.{name}")


_load_core()


@pytest.fixture(scope="session")
def core_package():
    """This repository's ``core`` package, imported without FiftyOne:
    ``core_package.neighbors`` is ``core/neighbors.py``."""
    return _Core()


@pytest.fixture(scope="session", autouse=True)
def _no_fiftyone_for_core_tests(request):
    """Core tests run on their own start no database."""
    yield
    selected = {item.path.parts[-2] for item in request.session.items}
    if selected == {"core"}:
        import harness

        assert not harness.started(), "a core test started the database"
        assert "fiftyone" not in sys.modules, "a core test imported fiftyone"
