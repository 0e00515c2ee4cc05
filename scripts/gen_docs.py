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
    "labeling": ("labeling", "OPTIONS"),
}


def load_plugin():
    """Imports this repository as a package under a private name, with its
    API, so that components registered above ``core`` (the zoo embedder)
    are in their registries too."""
    name = "_curate_plugin"
    path = os.path.join(REPO, "__init__.py")
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[REPO]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    importlib.import_module(f"{name}.api")
    return name


def tables():
    """Each marker's table, from its schema's ``markdown_table()``."""
    pkg = load_plugin()
    out = {}
    for marker, (module, attr) in TABLES.items():
        schema = getattr(importlib.import_module(f"{pkg}.core.{module}"), attr)
        out[marker] = schema.markdown_table()
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
