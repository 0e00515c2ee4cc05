"""These tests need the database: start it before any module here imports
fiftyone (see tests/harness.py)."""

import harness  # noqa: E402 (made importable by tests/conftest.py)

harness.start()
