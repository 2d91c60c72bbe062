"""The house rules of docs/DESIGN.md, kept by reading facekp_cli/ (ast), so the next feature cannot
quietly import upward or in a circle, or copy a rule that has one home.

    cli -> services -> {experiments, video, apps} -> predict -> model -> data -> foundation

A module may import its own layer's package and any layer below; experiments/, video/ and apps/
are peers that do not import each other. Function-local imports count too (lazy imports keep
`facekp --help` fast; they do not make an upward import right). Written for the layout after
scripts/restructure.py (issue 20): on the tree before it, it fails, naming the imports that move.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "facekp_cli"
RANKS = {
    "cli": 6,
    "services": 5,
    "experiments": 4,
    "video": 4,
    "apps": 4,
    "predict": 3,
    "model": 2,
    "data": 1,
}
FOUNDATION = 0  # every module directly in facekp_cli/: errors, settings, keypoints, frame, metrics, ...
STDLIB_ONLY = ("media", "compat", "errors", "keypoints")  # imported by the CLI at module level
BACKPORTS = {"tomli"}  # compat.py's tomllib on Python 3.10


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANKS) else ""


ENTRY_POINTS = {"facekp_cli.__main__": max(RANKS.values()) + 1}  # `python -m facekp_cli`, above cli


def _rank(module: str) -> int:
    return ENTRY_POINTS.get(module, RANKS.get(_layer(module), FOUNDATION))


def _imports(module: str) -> list[tuple[str, int]]:
    """(imported facekp module, line) for every import in the module, wherever it stands."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            pytest.fail(f"{MODULES[module]}:{node.lineno}: relative import; facekp uses absolute ones")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("facekp_cli"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.append((candidate if candidate in MODULES else node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("facekp_cli")]
    return found


def _third_party(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("facekp_cli", "__future__")}


def test_the_layers_exist():
    for layer in RANKS:
        assert (PACKAGE / layer / "__init__.py").is_file(), (
            f"facekp_cli/{layer}/ is missing (run scripts/restructure.py)"
        )


def test_no_module_imports_a_layer_above_it_or_a_peer():
    wrong = []
    for module in MODULES:
        for target, line in _imports(module):
            if target not in MODULES:
                wrong.append(f"{MODULES[module]}:{line}: imports {target}, which does not exist")
                continue
            mine, theirs = _rank(module), _rank(target)
            peer = mine == theirs and _layer(module) != _layer(target) and mine != FOUNDATION
            if theirs > mine or peer:
                wrong.append(f"{MODULES[module]}:{line}: {_layer(module) or 'foundation'} imports {target}")
    assert not wrong, "imports against docs/DESIGN.md's layers:\n" + "\n".join(wrong)


def test_no_import_circles():
    graph = {m: {t for t, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}
    graph = {m: {t for t in targets if t != "facekp_cli"} for m, targets in graph.items()}
    circles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_only_experiments_talks_to_mlflow():
    talkers = sorted(m for m in MODULES if "mlflow" in _third_party(m))
    assert talkers and all(m.startswith("facekp_cli.experiments.") for m in talkers), talkers


@pytest.mark.parametrize("name", STDLIB_ONLY)
def test_modules_the_fast_cli_path_imports_use_the_standard_library_only(name):
    assert _third_party(f"facekp_cli.{name}") <= BACKPORTS


# Issue 20's copied rules, each with the one file allowed to state it (a regular expression that only
# that rule's code matches). The default-checkpoint rule and the per-image loop are other issues'.
ONE_HOME = {
    "the tomllib shim": (r"import tomli\b", "compat.py"),
    "point indices by name": (r"NAMES\.index\(\"", "keypoints.py"),
    "Lightning logger silencing": (r"\"lightning\.fabric\"", "cli/context.py"),
    "image size from a header (EXIF orientation)": (r"0x0112", "data/images.py"),
    "drawing keypoints (pixel convention)": (r"def draw_keypoints|def cv_point", "plots.py"),
    "run-folder naming": (r"f\"\{[a-z_.]+\}-\{n\}\"", "run_folder.py"),
    "the MLflow URI rule": (r"MLFLOW_TRACKING_URI|\"sqlite:///\"", "experiments/client.py"),
    "video suffixes and cameras": (r"\"\.mkv\",|/dev/video(\(|\\d)", "media.py"),
    "image suffixes": (r"\"\.webp\"", "media.py"),
}


@pytest.mark.parametrize("rule", sorted(ONE_HOME))
def test_each_rule_of_issue_20_has_one_home(rule):
    pattern, home = ONE_HOME[rule]
    places = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if re.search(pattern, _code(path.read_text(encoding="utf-8")))
    )
    assert places == [home], f"{rule}: stated in {places}, its home is facekp_cli/{home}"


def _code(text: str) -> str:
    """The source without comments and docstrings, so prose that names a rule does not count."""
    tree = ast.parse(text)
    lines = text.splitlines()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                for i in range(body[0].lineno - 1, body[0].end_lineno):
                    lines[i] = ""
    return "\n".join(re.sub(r"\s#.*$|^\s*#.*$", "", line) for line in lines)


def test_the_package_map_in_docs_design_matches_the_tree():
    design = PACKAGE.parent.joinpath("docs/DESIGN.md").read_text(encoding="utf-8")
    block = design.split("## Package map", 1)[1].split("```", 2)[1]
    mapped = {line.split()[0] for line in block.splitlines() if line.startswith("facekp_cli/")}
    tree = {str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")}
    assert mapped == tree, {
        "in the map only": sorted(mapped - tree),
        "in the tree only": sorted(tree - mapped),
    }
