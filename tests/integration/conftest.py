"""These tests need the database: start it before any module here imports
fiftyone (see tests/harness.py); then the helper modules of tests/ that
import fiftyone (``app_requests``, ``panel_app``) are made importable by
name too."""

import importlib.util
import os
import sys

import harness  # noqa: E402 (made importable by tests/conftest.py)

harness.start()

for _name in ("app_requests", "panel_app"):
    _path = os.path.join(os.path.dirname(harness.__file__), _name + ".py")
    _spec = importlib.util.spec_from_file_location(_name, _path)
    sys.modules[_name] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_name])
