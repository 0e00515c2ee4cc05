"""Writes the README's tables of parameters from the registries' schemas.

Each table sits between ``<!-- <name>:start -->`` and ``<!-- <name>:end -->``
markers in README.md. With ``--check``, fails if the README is out of date
instead of writing it.
"""

import argparse
import importlib
import importlib.util
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")

# marker name -> (core module, registry attribute)
TABLES = {
    "methods": ("methods", "METHODS"),
    "reducers": ("reduce", "REDUCERS"),
    "embedders": ("embedders", "EMBEDDERS"),
    "projections": ("projection", "PROJECTIONS"),
}


def load_core():
    """Imports this repository's ``core`` package (it does not import
    fiftyone) under a private name."""
    name = "_curate_core"
    path = os.path.join(REPO, "core", "__init__.py")
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[os.path.dirname(path)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return name


def tables():
    pkg = load_core()
    out = {}
    for marker, (module, attr) in TABLES.items():
        if not os.path.exists(os.path.join(REPO, "core", module + ".py")):
            continue
        registry = getattr(importlib.import_module(f"{pkg}.{module}"), attr)
        out[marker] = registry.markdown_table()
    return out


def render(text):
    for marker, table in tables().items():
        pattern = re.compile(
            rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)",
            re.S,
        )
        if not pattern.search(text):
            raise SystemExit(f"README.md has no '{marker}' markers")
        text = pattern.sub(
            lambda m: m.group(1) + table + "\n" + m.group(2), text
        )
    return text


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    with open(README) as f:
        text = f.read()
    new = render(text)
    if args.check:
        if new != text:
            sys.exit(
                "README.md tables are out of date: run `make docs` "
                "(python scripts/gen_docs.py)"
            )
        return
    with open(README, "w") as f:
        f.write(new)


if __name__ == "__main__":
    main()
