"""The project's structure: layering, no import cycles, rooms of a
readable size. Static checks on the source; no database, no fiftyone."""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
# Folders that are not part of the plugin's importable code
NOT_PLUGIN = {"tests", "bench", "scripts", "assets", "node_modules"}

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
# A function may be longer when a comment on the line above its ``def``
# (or its first decorator) says why, starting with this marker
LONG_FUNCTION_MARKER = "# long:"


def plugin_files():
    for path in sorted(REPO.rglob("*.py")):
        rel = path.relative_to(REPO)
        if rel.parts[0] in NOT_PLUGIN or rel.parts[0].startswith("."):
            continue
        yield rel


def module_name(rel):
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(rel): rel for rel in plugin_files()}


def imports_of(rel):
    """The plugin modules that ``rel`` imports anywhere in its source
    (inside functions too)."""
    name = module_name(rel)
    package = name if rel.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse((REPO / rel).read_text())):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = package.split(".") if package else []
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
        for alias in node.names:
            sub = f"{target}.{alias.name}" if target else alias.name
            if sub in MODULES:
                out.add(sub)
            elif target in MODULES:
                out.add(target)
    return out


def find_cycle(graph):
    """A list of modules forming an import cycle, or ``None``."""
    state = {}
    stack = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_plugin_has_no_import_cycle():
    graph = {name: imports_of(rel) for name, rel in MODULES.items()}
    assert graph["api.clustering"] >= {"core.methods", "runs", "data"}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def _imported_names(rel):
    for node in ast.walk(ast.parse((REPO / rel).read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


@pytest.mark.parametrize(
    "rel", [r for r in MODULES.values() if r.parts[0] == "core"], ids=str
)
def test_core_never_imports_fiftyone(rel):
    for name in _imported_names(rel):
        assert not name.startswith("fiftyone"), (str(rel), name)


@pytest.mark.parametrize(
    "rel", [r for r in MODULES.values() if r.parts[0] == "api"], ids=str
)
def test_the_api_never_imports_operators(rel):
    for name in _imported_names(rel):
        assert not name.startswith("fiftyone.operators"), (str(rel), name)
    assert not {"operators", "panels"} & {
        m.split(".")[0] for m in imports_of(rel)
    }


def function_lengths(path):
    """``(name, line, lines)`` of each function of the file ``path``, its
    docstring excluded, unless a comment above it says why it is long."""
    source = path.read_text()
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        if LONG_FUNCTION_MARKER in lines[first - 2]:
            continue
        n = node.end_lineno - node.lineno + 1
        body = node.body
        if (
            isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            n -= body[0].end_lineno - body[0].lineno + 1
        yield node.name, node.lineno, n


def test_modules_and_functions_are_of_a_readable_size():
    too_big = []
    too_long = []
    for rel in MODULES.values():
        n = (REPO / rel).read_text().count("\n")
        if n > MAX_MODULE_LINES:
            too_big.append(f"{rel} ({n} lines)")
        for name, line, length in function_lengths(REPO / rel):
            if length > MAX_FUNCTION_LINES:
                too_long.append(f"{rel}:{line} {name} ({length} lines)")
    assert not too_big, too_big
    assert not too_long, too_long


def test_the_size_check_counts_code_not_docstrings(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    doc = '    """' + "\n" * 30 + '    """'
    (tmp_path / "m.py").write_text(
        f"def short():\n{doc}\n    return 1\n\n"
        f"def long():\n{body}\n\n"
        f"{LONG_FUNCTION_MARKER} a table of cases\ndef excused():\n{body}\n"
    )
    found = {name: n for name, _, n in function_lengths(tmp_path / "m.py")}
    assert found == {"short": 2, "long": 62}
