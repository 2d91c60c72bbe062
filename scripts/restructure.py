"""Issue 20's re-layout as a re-runnable script: moves, splits by name and import rewriting.

Run from the repository root, on the merged tree, then `ruff check . && ruff format .` and the tests:

    python scripts/restructure.py            # do it (git mv / git add; nothing is committed)
    python scripts/restructure.py --dry-run  # print the plan only

It works from three tables, never from line numbers, so code it has not seen (new modules, new
functions, new imports added by other branches) is carried along:

- MOVES: whole modules, OLD -> NEW (git mv).
- SPLITS: a module's top-level definitions moved BY NAME into other modules (with their decorators and
  the comments above them); each target gets the imports its definitions use, and imports from its
  sibling targets. A definition the table does not name goes to the split's REST module and is reported.
- RENAMES: private helpers that now cross modules become public (renamed at their definition and at
  every use through an import).

Then every `facekp_cli.` import (`from M import a`, `from P import m`, `import M`), every dotted module
string (`"facekp_cli.tracking.resolve_uri"`) and every path (`facekp_cli/predict/video.py`) is
rewritten in facekp_cli/, tests/, benchmarks/, scripts/, pyproject.toml, conf.toml, dvc.yaml, Makefile,
Dockerfile, README.md and docs/. `DESIGN.md` cited by the code becomes `docs/DESIGN.md`.

It prints what it did and exits 1, changing nothing, when something is ambiguous (a name defined twice,
a module object used in a way it cannot follow, a rename that would collide); a second run does nothing.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PKG = "facekp_cli"

# --- the tables -------------------------------------------------------------------------------------

MOVES: dict[str, str] = {
    # video/: everything about following faces through frames ("tracking" now means MLflow only)
    "facekp_cli.predict.tracking": "facekp_cli.video.face_tracks",
    "facekp_cli.predict.smoothing": "facekp_cli.video.smoothing",
    "facekp_cli.predict.video_output": "facekp_cli.video.output",
    # experiments/: MLflow only
    "facekp_cli.predict.pyfunc": "facekp_cli.experiments.pyfunc",
    "facekp_cli.services.tracking_sync": "facekp_cli.services.tracking_sync",  # stays: a service
    # model files: the metadata written into ONNX/TorchScript belongs with the model, not with predict
    "facekp_cli.predict.metadata": "facekp_cli.model.metadata",
    # apps/: the two applications of predicted points (was mixed into predict/)
    "facekp_cli.predict.align": "facekp_cli.apps.align",
    "facekp_cli.predict.overlay": "facekp_cli.apps.overlay",
    # data/synth/: the synthetic face generator, one package
    "facekp_cli.data.synth": "facekp_cli.data.synth.generator",
    "facekp_cli.data.synth_draw": "facekp_cli.data.synth.drawing",
    "facekp_cli.data.synth_effects": "facekp_cli.data.synth.effects",
    "facekp_cli.data.synth_face": "facekp_cli.data.synth.face",
    "facekp_cli.data.synth_rebuild": "facekp_cli.data.synth.rebuild",
    "facekp_cli.data.synth_shape": "facekp_cli.data.synth.shape",
}


@dataclass
class Split:
    source: str
    names: dict[str, str]  # top-level name -> module it moves to
    rest: str  # where every top-level definition the table does not name goes (may be `source`)
    docs: dict[str, str] = field(default_factory=dict)  # docstrings of modules it creates


EXP = "facekp_cli.experiments"
SPLITS: list[Split] = [
    Split(
        "facekp_cli.tracking",
        {
            "DEFAULT_URI": f"{EXP}.client",
            "resolve_uri": f"{EXP}.client",
            "sqlite_store": f"{EXP}.client",
            "check_reachable": f"{EXP}.client",
            "_client": f"{EXP}.client",
            "_experiment_id": f"{EXP}.client",
            "_answers": f"{EXP}.client",
            "_now_ms": f"{EXP}.client",
            "PendingJournal": f"{EXP}.journal",
            "_journal_key": f"{EXP}.journal",
            "pending_journals": f"{EXP}.journal",
            "_offline_warning": f"{EXP}.journal",
            "_keep": f"{EXP}.journal",
            "_STR": f"{EXP}.journal",
            "_OPT_STR": f"{EXP}.journal",
            "_LIST": f"{EXP}.journal",
            "_OP_FIELDS": f"{EXP}.journal",
            "JournalContents": f"{EXP}.journal",
            "_op_problem": f"{EXP}.journal",
            "read_journal": f"{EXP}.journal",
            "check_registry_names": f"{EXP}.registry",
            "_apply": f"{EXP}.replay",
            "replay_journal": f"{EXP}.replay",
            "register_model": f"{EXP}.registry",
            "_register": f"{EXP}.registry",
            "_run_for_model": f"{EXP}.registry",
            "log_pyfunc_model": f"{EXP}.registry",
            "MlflowTracker": f"{EXP}.callback",
            "_lr_curve_png": f"{EXP}.plots",
            "_predictions_png": f"{EXP}.plots",
            "log_evaluation": f"{EXP}.runs",
            "start_parent_run": f"{EXP}.runs",
            "finish_parent_run": f"{EXP}.runs",
            "mark_trial_run": f"{EXP}.runs",
        },
        rest=f"{EXP}.client",
        docs={
            f"{EXP}.client": "The MLflow client: which store (tracking.uri), whether it answers.\n\n"
            "The only modules that talk to MLflow are in facekp_cli/experiments/ (docs/DESIGN.md).",
            f"{EXP}.journal": "The offline journal: tracking calls a server did not take, as JSON lines.\n\n"
            "A tracking server that stops answering does not stop the work: each call that fails is\n"
            "appended here (one JSON line per call, under tracking.pending_dir) and replayed later by\n"
            "experiments/replay.py, at the next epoch end or with `facekp tracking sync`.",
            f"{EXP}.replay": "Replaying journalled tracking calls into the server, in order, losing none.",
            f"{EXP}.registry": "MLflow Models and the model registry (`facekp export --register`, "
            "tracking.log_model).",
            f"{EXP}.callback": "`MlflowTracker`, the Lightning Callback that logs a training run from global "
            "rank 0.\n\nParams (the flattened settings), per-epoch metrics, provenance tags and, at the end, "
            "the resolved\nconfig, the best checkpoint, a picture of validation predictions and the "
            "learning-rate curve.\nA run that crashes ends FAILED, an interrupted one KILLED; never left "
            "RUNNING.",
            f"{EXP}.plots": "The two pictures a training run logs to MLflow (matplotlib, Agg).",
            f"{EXP}.runs": "Runs outside training: eval logging into a training run, Optuna parent and "
            "trial runs.",
        },
    ),
    Split(  # model export writers under model/: experiments (log_model) no longer reach into a service
        "facekp_cli.services.export",
        {
            n: "facekp_cli.model.export"
            for n in ("INPUT_NAME", "OUTPUT_NAME", "export_onnx", "write_onnx_metadata", "export_torchscript")
        },
        rest="facekp_cli.services.export",
        docs={
            "facekp_cli.model.export": "Model file writers: ONNX (dynamic batch axis) and TorchScript, "
            "with facekp metadata.\n\nVerification, quantization and atomic placement are "
            "services/export.py's; these only write."
        },
    ),
    Split(  # one home for the suffix rules the fast CLI path needs (standard library only)
        "facekp_cli.predict.video",
        {
            n: "facekp_cli.media"
            for n in ("VIDEO_EXTENSIONS", "CAMERA_PATTERN", "camera_index", "is_video_input")
        },
        rest="facekp_cli.video.io",
        docs={
            "facekp_cli.media": "What a path names: image, video file or camera. Standard library only, so "
            "the CLI\nmay import it at module level without slowing `facekp --help`.",
            "facekp_cli.video.io": "",  # filled from the source's own docstring
        },
    ),
    Split(
        "facekp_cli.data.images",
        {"IMAGE_EXTENSIONS": "facekp_cli.media", "is_image_file": "facekp_cli.media"},
        rest="facekp_cli.data.images",
    ),
    Split(  # the pipeline helpers `facekp infer VIDEO` and `facekp overlay VIDEO` share
        "facekp_cli.services.video",
        {
            n: "facekp_cli.video.pipeline"
            for n in (
                "tracker_params",
                "_WholeFrame",
                "make_detector",
                "make_tracker",
                "track_video",
                "draw_tracked",
            )
        },
        rest="facekp_cli.services.video",
        docs={
            "facekp_cli.services.video": "`facekp infer VIDEO`: keypoints per frame with face ids.\n\n"
            "`run` streams the tracked faces of video/pipeline.py's per-frame loop to JSON Lines or CSV and\n"
            "optionally an annotated video.",
            "facekp_cli.video.pipeline": "The per-frame loop `facekp infer VIDEO` and `facekp overlay "
            "VIDEO` share.\n\n`track_video`: decode a frame, let the tracker choose the crops, run the "
            "model once on all of\nthem, turn the points into tracked (smoothed) faces.",
        },
    ),
]

# Private helpers that now cross modules become public: (module after the moves, old) -> new.
RENAMES: dict[tuple[str, str], str] = {
    (f"{EXP}.client", "_client"): "open_client",
    (f"{EXP}.client", "_experiment_id"): "experiment_id_for",
    (f"{EXP}.client", "_answers"): "server_answers",
    (f"{EXP}.client", "_now_ms"): "now_ms",
    (f"{EXP}.journal", "_journal_key"): "journal_key",
    (f"{EXP}.journal", "_offline_warning"): "offline_warning",
    (f"{EXP}.journal", "_keep"): "keep_calls",
    (f"{EXP}.replay", "_apply"): "apply_call",
    (f"{EXP}.registry", "_register"): "register_version",
    (f"{EXP}.plots", "_lr_curve_png"): "lr_curve_png",
    (f"{EXP}.plots", "_predictions_png"): "predictions_png",
    ("facekp_cli.video.pipeline", "_WholeFrame"): "WholeFrame",
    ("facekp_cli.data.synth.drawing", "_bgr"): "to_bgr",
    ("facekp_cli.data.synth.drawing", "_fill"): "fill_polygon",
    ("facekp_cli.data.synth.drawing", "_line"): "draw_polyline",
    ("facekp_cli.data.synth.drawing", "_random_color"): "random_color",
    ("facekp_cli.data.synth.face", "_bezier"): "bezier",
}

PACKAGE_DOCS = {
    "facekp_cli.experiments": "MLflow only: client, offline journal and replay, Lightning callback, "
    "registry, pyfunc.",
    "facekp_cli.video": "Video: OpenCV I/O, the face tracker, smoothing, per-frame pipeline, outputs.",
    "facekp_cli.apps": "Applications of predicted points: face alignment and asset overlay.",
    "facekp_cli.data.synth": "The synthetic face generator: shape model, face, drawing, effects, rebuild.",
}

# Prose that names a split module loosely (not as a dotted name or a path): file -> [(old, new)].
TEXT_FIXES = {
    "facekp_cli/services/tracking_sync.py": [("(see tracking.py)", "(see experiments/replay.py)")],
}

SHARED = {"log", "logger"}  # module-level `log = logging.getLogger(__name__)`: copied to each user
PY_ROOTS = ("facekp_cli", "tests", "benchmarks", "scripts")
TEXT_FILES = ("pyproject.toml", "conf.toml", "dvc.yaml", "Makefile", "Dockerfile", "README.md")
TEXT_GLOBS = ("docs/**/*.md", "scripts/*.sh", "benchmarks/*.sh")
SELF = Path(__file__).resolve()


class Ambiguous(Exception):
    pass


# --- helpers ----------------------------------------------------------------------------------------


def mod_path(root: Path, module: str) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def is_module(root: Path, module: str) -> bool:
    parts = module.split(".")
    return mod_path(root, module).is_file() or (root.joinpath(*parts) / "__init__.py").is_file()


def parent_leaf(module: str) -> tuple[str, str]:
    parent, _, leaf = module.rpartition(".")
    return parent, leaf


def defined_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    if isinstance(stmt, ast.Assign):
        return [n.id for t in stmt.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return [stmt.target.id]
    return []


def is_import_block(stmt: ast.stmt) -> bool:
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return True
    if isinstance(stmt, (ast.Try, ast.If)):  # a tomllib shim, `if TYPE_CHECKING:`
        body = [*stmt.body, *getattr(stmt, "orelse", [])]
        body += [s for h in getattr(stmt, "handlers", []) for s in h.body]
        return all(isinstance(s, (ast.Import, ast.ImportFrom, ast.Pass)) for s in body)
    return False


def bound_by_import(stmt: ast.stmt) -> set[str]:
    names = set()
    for node in ast.walk(stmt):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                names.add(a.asname or a.name.split(".")[0])
    return names


def used_names(nodes) -> set[str]:
    names = set()
    for stmt in nodes:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name):
                names.add(node.id)
    return names


def all_identifiers(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.alias):
            out.add(node.asname or node.name.split(".")[0])
    return out


def line_offsets(text: str) -> list[int]:
    offsets, pos = [0], 0
    for line in text.splitlines(keepends=True):
        pos += len(line)
        offsets.append(pos)
    return offsets


def apply_edits(text: str, edits: list[tuple[int, int, str]]) -> str:
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def span(offsets, node) -> tuple[int, int]:
    # ast columns are UTF-8 byte offsets; facekp's import lines and names are ASCII
    return offsets[node.lineno - 1] + node.col_offset, offsets[node.end_lineno - 1] + node.end_col_offset


# --- the job ----------------------------------------------------------------------------------------


class Restructure:
    def __init__(self, root: Path, dry_run: bool) -> None:
        self.root, self.dry_run = root, dry_run
        self.log: list[str] = []
        self.touched: set[Path] = set()
        self.split_outputs: set[Path] = set()
        self.writes: dict[Path, str] = {}  # planned file contents (applied at the end)
        self.removed: set[Path] = set()
        self.name_map: dict[tuple[str, str], str] = {}  # (old module, name) -> new module
        self.split_sources: set[str] = {s.source for s in SPLITS}

    def say(self, text: str) -> None:
        self.log.append(text)
        print(text)

    # files as they will be after the planned changes
    def read(self, path: Path) -> str | None:
        if path in self.writes:
            return self.writes[path]
        if path in self.removed or not path.is_file():
            return None
        return path.read_text(encoding="utf-8")

    def write(self, path: Path, text: str) -> None:
        self.writes[path] = text
        self.removed.discard(path)

    # 1. whole-module moves
    def plan_moves(self) -> list[tuple[Path, Path]]:
        moves = []
        for old, new in MOVES.items():
            if old == new:
                continue
            src, dst = mod_path(self.root, old), mod_path(self.root, new)
            if src.is_file() and dst.is_file():
                raise Ambiguous(f"{old} -> {new}: both {src} and {dst} exist; merge them by hand first")
            if src.is_file():
                moves.append((src, dst))
            elif not dst.is_file():
                self.say(f"warning: {old}: neither it nor {new} exists (removed by another branch?)")
        return moves

    # 2. splits by name
    def plan_split(self, split: Split) -> None:
        src = mod_path(self.root, split.source)
        for name, target in split.names.items():
            self.name_map[(split.source, name)] = target
        text = self.read(src)
        if text is None:
            self.say(f"{split.source}: already split")
            return
        tree = ast.parse(text)
        lines = text.splitlines(keepends=True)
        body = tree.body
        doc = ast.get_docstring(tree, clean=False)
        start = 1 if doc is not None else 0
        imports, shared, chunks, unmapped = [], {}, [], []  # chunks: (names, target, text, stmt)
        prev_end = body[0].end_lineno if start else 0
        for stmt in body[start:]:
            first = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
            chunk_text = "".join(lines[prev_end : stmt.end_lineno])
            head = "".join(lines[prev_end : first - 1])
            prev_end = stmt.end_lineno
            if is_import_block(stmt):
                if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
                    continue
                imports.append((stmt, "".join(lines[first - 1 : stmt.end_lineno])))
                continue
            names = defined_names(stmt)
            if names and set(names) <= SHARED:
                shared[names[0]] = (stmt, "".join(lines[first - 1 : stmt.end_lineno]))
                continue
            targets = {split.names.get(n) for n in names}
            if len(targets) > 1:
                raise Ambiguous(f"{split.source}: one statement defines {names}, mapped to {targets}")
            target = targets.pop() if names else None
            if target is None:
                target = split.rest
                if split.rest != split.source or not names:
                    unmapped.append(", ".join(names) or ast.unparse(stmt).splitlines()[0][:50])
            for n in names:
                self.name_map[(split.source, n)] = target
            comments = head.strip("\n")
            chunks.append((names, target, chunk_text if not comments else "\n" + comments + "\n"
                           + "".join(lines[first - 1 : stmt.end_lineno]), stmt))  # fmt: skip
        if unmapped:
            self.say(f"  not in the table, so to {split.rest} (the rest): {'; '.join(unmapped)}")
        missing = sorted(set(split.names) - {n for names, _, _, _ in chunks for n in names} - set(shared))
        if missing:  # renamed or removed by another branch: its imports cannot be followed by name
            self.say(f"  warning: {split.source} no longer defines {', '.join(missing)} (in the table)")
        defined_in = {n: t for names, t, _, _ in chunks for n in names}
        targets = []
        for _, t, _, _ in chunks:
            if t not in targets:
                targets.append(t)
        if targets == [split.source]:
            self.say(f"{split.source}: nothing to move")
            return
        # dependencies between the pieces, to refuse a circle before writing anything
        deps: dict[str, set[str]] = {t: set() for t in targets}
        pieces: dict[str, list] = {t: [] for t in targets}
        for names, t, chunk, stmt in chunks:
            pieces[t].append((names, chunk, stmt))
        for t, items in pieces.items():
            used = used_names(s for _, _, s in items)
            for n in used:
                other = defined_in.get(n)
                if other and other != t:
                    deps[t].add(other)
        self.check_no_cycle(split.source, deps)
        for t in targets:
            items = pieces[t]
            used = used_names(s for _, _, s in items)
            used |= used_names(stmt for n, (stmt, _) in shared.items() if n in used)
            import_lines = []
            for stmt, stmt_text in imports:
                if isinstance(stmt, ast.ImportFrom) and not isinstance(stmt, ast.Try):
                    keep = [a for a in stmt.names if (a.asname or a.name) in used]
                    if keep:
                        names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in keep)
                        import_lines.append(f"from {'.' * stmt.level}{stmt.module or ''} import {names}\n")
                elif isinstance(stmt, ast.Import):
                    keep = [a for a in stmt.names if (a.asname or a.name.split(".")[0]) in used]
                    for a in keep:
                        import_lines.append(
                            f"import {a.name}" + (f" as {a.asname}" if a.asname else "") + "\n"
                        )
                elif bound_by_import(stmt) & used:
                    import_lines.append(stmt_text.rstrip("\n") + "\n")
            cross: dict[str, list[str]] = {}
            for n in sorted(used):
                other = defined_in.get(n)
                if other and other != t:
                    cross.setdefault(other, []).append(n)
            for other, names in cross.items():
                import_lines.append(f"from {other} import {', '.join(names)}\n")
            shared_lines = [s_text + "\n" for n, (_, s_text) in shared.items() if n in used]
            code = "".join(chunk for _, chunk, _ in items)
            moved_names = [n for names, _, _ in items for n in names]
            path = mod_path(self.root, t)
            existing = self.read(path)
            if t == split.source:
                new_doc = split.docs.get(t) or doc
                self.write(path, self.module_text(new_doc, import_lines, shared_lines, code))
            elif existing is None:
                new_doc = split.docs.get(t) or doc or f"Moved from {split.source}."
                self.write(path, self.module_text(new_doc, import_lines, shared_lines, code))
                self.say(f"  {split.source} -> {t}: {', '.join(moved_names)}")
            else:
                self.write(
                    path, self.append_to(path, existing, moved_names, import_lines, shared_lines, code)
                )
                self.say(f"  {split.source} -> {t} (appended): {', '.join(moved_names)}")
            self.split_outputs.add(path)
        if split.source not in targets:
            self.removed.add(src)
            self.writes.pop(src, None)
            self.say(f"{split.source}: split, {src.relative_to(self.root)} removed")

    def check_no_cycle(self, where: str, deps: dict[str, set[str]]) -> None:
        seen, stack = set(), []

        def visit(node):
            if node in stack:
                raise Ambiguous(
                    f"{where}: the split would make an import circle: {' -> '.join([*stack, node])}"
                )
            if node in seen:
                return
            stack.append(node)
            for d in deps.get(node, ()):
                visit(d)
            stack.pop()
            seen.add(node)

        for node in deps:
            visit(node)

    @staticmethod
    def module_text(doc, import_lines, shared_lines, code) -> str:
        out = f'"""{doc}"""\n\n' if doc else ""
        out += "from __future__ import annotations\n\n"
        out += "".join(import_lines)
        if shared_lines:
            out += "\n" + "".join(shared_lines)
        return out + "\n" + code.rstrip("\n") + "\n"

    def append_to(self, path, existing, moved_names, import_lines, shared_lines, code) -> str:
        tree = ast.parse(existing)
        have = {n for s in tree.body for n in defined_names(s)}
        clash = sorted(set(moved_names) & have)
        if clash:
            raise Ambiguous(f"{path}: already defines {clash}; merge by hand")
        bound = {n for s in tree.body if is_import_block(s) for n in bound_by_import(s)}
        lines = existing.splitlines(keepends=True)
        last_import = max([s.end_lineno for s in tree.body if is_import_block(s)], default=0)
        wanted = []
        for line in import_lines:
            stmt = ast.parse(line).body[0]
            if not bound_by_import(stmt) <= bound:
                wanted.append(line)
        names_have = {n for s in tree.body for n in defined_names(s)}
        extra = [s for s in shared_lines if s.split("=")[0].strip() not in names_have]
        lines[last_import:last_import] = wanted
        return "".join(lines).rstrip("\n") + "\n" + "".join(extra) + "\n" + code.rstrip("\n") + "\n"

    # 3. rewriting imports and names
    def module_of(self, old: str) -> str | None:
        """The new module of a module that moved as a whole."""
        new = MOVES.get(old)
        return new if new and new != old else None

    def exists_after(self, module: str) -> bool:
        """Whether `module` is a module of the tree as it will be after the planned changes."""
        init = self.root.joinpath(*module.split(".")) / "__init__.py"
        return self.read(mod_path(self.root, module)) is not None or self.read(init) is not None

    def rewrite_python(self, path: Path, text: str) -> str:
        try:
            tree = ast.parse(text)
        except SyntaxError as exc:
            raise Ambiguous(f"{path}: does not parse ({exc})") from exc
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                child._parent = node
        offsets = line_offsets(text)
        idents = all_identifiers(tree)
        edits: list[tuple[int, int, str]] = []
        object_renames: dict[str, dict[str, str] | str] = {}  # local name -> new name or {attr: new}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level and PKG in (path.parts):
                    self.say(f"warning: {path}:{node.lineno}: relative import left alone")
                if node.level or not (node.module or "").startswith(PKG):
                    continue
                new_text = self.rewrite_from(path, tree, node, idents, object_renames)
                if new_text is not None:
                    indent = " " * node.col_offset
                    edits.append((*span(offsets, node), new_text.replace("\n", "\n" + indent)))
            elif isinstance(node, ast.Import):
                parts, changed = [], False
                for a in node.names:
                    if a.name in self.split_sources and not self.exists_after(a.name):
                        raise Ambiguous(f"{path}:{node.lineno}: `import {a.name}` of a split module")
                    new = self.module_of(a.name) or a.name
                    changed |= new != a.name
                    parts.append(new + (f" as {a.asname}" if a.asname else ""))
                if changed:
                    edits.append((*span(offsets, node), "import " + ", ".join(parts)))
        # uses of module objects whose module moved or split
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in object_renames:
                how = object_renames[node.id]
                parent = getattr(node, "_parent", None)
                if isinstance(how, str):
                    edits.append((*span(offsets, node), how))
                elif isinstance(parent, ast.Attribute) and parent.value is node:
                    if how.get(parent.attr, node.id) != node.id:
                        edits.append((*span(offsets, node), how[parent.attr]))
                else:
                    raise Ambiguous(f"{path}:{node.lineno}: `{node.id}` (a split module) used other than as "
                                    f"`{node.id}.name`; rewrite it by hand")  # fmt: skip
        return apply_edits(text, edits)

    def rewrite_from(self, path, tree, node, idents, object_renames) -> str | None:
        module = node.module
        groups: dict[str, list[str]] = {}
        changed = False
        for a in node.names:
            alias_text = a.name + (f" as {a.asname}" if a.asname else "")
            full = f"{module}.{a.name}"
            local = a.asname or a.name
            if self.module_of(full):  # `from facekp_cli.predict import tracking`
                parent, leaf = parent_leaf(self.module_of(full))
                if a.asname or leaf == a.name:
                    groups.setdefault(parent, []).append(leaf + (f" as {a.asname}" if a.asname else ""))
                elif leaf in idents:
                    groups.setdefault(parent, []).append(f"{leaf} as {a.name}")
                else:
                    groups.setdefault(parent, []).append(leaf)
                    object_renames[local] = leaf
                changed = True
            elif full in self.split_sources:  # `from facekp_cli import tracking`: follow each `tracking.X`
                attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                         and isinstance(n.value, ast.Name) and n.value.id == local}  # fmt: skip
                still = self.exists_after(full)
                how: dict[str, str] = {}
                for attr in sorted(attrs):
                    target = self.name_map.get((full, attr)) or (full if still else None)
                    if target is None:
                        raise Ambiguous(f"{path}: `{local}.{attr}`: {full}.{attr} is not in the split table")
                    parent, leaf = parent_leaf(target)
                    if target == full:
                        bound, entry = local, alias_text
                    elif leaf not in idents or leaf == local:
                        bound, entry = leaf, leaf
                    elif f"{leaf}_module" not in idents:
                        bound, entry = f"{leaf}_module", f"{leaf} as {leaf}_module"
                    else:
                        raise Ambiguous(f"{path}: cannot bind {target} to a free name")
                    names = groups.setdefault(parent if target != full else module, [])
                    if entry not in names:
                        names.append(entry)
                    how[attr] = bound
                if any(b != local for b in how.values()):
                    object_renames[local] = how
                    changed = True
                elif not how:
                    groups.setdefault(module, []).append(alias_text)
            elif (module, a.name) in self.name_map and self.name_map[(module, a.name)] != module:
                groups.setdefault(self.name_map[(module, a.name)], []).append(alias_text)
                changed = True
            elif self.module_of(module) and not self.exists_after(full):
                groups.setdefault(self.module_of(module), []).append(alias_text)
                changed = True
            else:
                groups.setdefault(module, []).append(alias_text)
        if not changed:
            return None
        return "\n".join(f"from {m} import {', '.join(names)}" for m, names in groups.items())

    def rewrite_text(self, text: str, python: bool) -> str:
        """Dotted module names and file paths in strings, comments and docs."""
        new_modules = (
            set(MOVES.values()) | {t for s in SPLITS for t in s.names.values()} | {s.rest for s in SPLITS}
        )
        for old, new in MOVES.items():
            if old == new:
                continue
            subs = sorted({m[len(old) + 1 :].split(".")[0] for m in new_modules if m.startswith(old + ".")})
            # `facekp_cli.data.synth.generator` and `from facekp_cli.data.synth import generator` are the new
            # package, not the old module
            alternatives = "|".join(subs)
            guard = f"(?!\\.(?:{alternatives})\\b)(?!\\s+import\\s+(?:{alternatives})\\b)" if subs else ""
            text = re.sub(rf"(?<![\w.]){re.escape(old)}(?!\w){guard}", new, text)
            text = re.sub(
                rf"(?<![\w/]){re.escape(old.replace('.', '/'))}\.py\b", new.replace(".", "/") + ".py", text
            )
        for split in SPLITS:
            if not self.exists_after(split.source):  # its file paths: to the module that took the rest
                old_path, new_path = (m.replace(".", "/") + ".py" for m in (split.source, split.rest))
                text = re.sub(rf"(?<![\w/]){re.escape(old_path)}\b", new_path, text)
            for name, target in split.names.items():
                if target == split.source:
                    continue
                new_name = RENAMES.get((target, name), name)
                text = re.sub(
                    rf"(?<![\w.]){re.escape(split.source)}\.{re.escape(name)}\b", f"{target}.{new_name}", text
                )
        return text

    def plan_renames(self, path: Path, text: str) -> str:
        tree = ast.parse(text)
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                child._parent = node
        offsets = line_offsets(text)
        me = self.module_name(path)
        edits = []
        local_new: dict[str, str] = {}  # names bound in this file that are renamed
        module_objects: dict[str, str] = {}  # local name -> module, for `mod._old`
        for (module, old), new in RENAMES.items():
            if me == module:
                local_new[old] = new
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and not node.level:
                for a in node.names:
                    new = RENAMES.get((node.module, a.name))
                    if new:
                        edits.append((*span(offsets, a), new + (f" as {a.asname}" if a.asname else "")))
                        if not a.asname:
                            local_new[a.name] = new
                    if f"{node.module}.{a.name}" in {m for m, _ in RENAMES}:
                        module_objects[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname and a.name in {m for m, _ in RENAMES}:
                        module_objects[a.asname] = a.name
        if not local_new and not module_objects:
            return text
        idents = all_identifiers(tree)
        local_new = {old: new for old, new in local_new.items() if old in idents}
        for old, new in local_new.items():
            if new in idents and new != old:
                raise Ambiguous(
                    f"{path}: renaming {old} -> {new} would collide with a name already used there"
                )
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in local_new:
                edits.append((*span(offsets, node), local_new[node.id]))
            elif (
                isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                and node.name in local_new
            ):
                if me is not None and (me, node.name) in RENAMES:
                    line_start = offsets[node.lineno - 1]
                    line = text[line_start : offsets[node.lineno]]
                    m = re.search(rf"\b(def|class)\s+({re.escape(node.name)})\b", line)
                    edits.append((line_start + m.start(2), line_start + m.end(2), local_new[node.name]))
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in module_objects
                and (module_objects[node.value.id], node.attr) in RENAMES
            ):
                end = offsets[node.end_lineno - 1] + node.end_col_offset
                edits.append((end - len(node.attr), end, RENAMES[(module_objects[node.value.id], node.attr)]))
        return apply_edits(text, edits)

    def module_name(self, path: Path) -> str | None:
        rel = path.relative_to(self.root)
        if rel.parts[0] != PKG:
            return None
        return ".".join(rel.with_suffix("").parts).removesuffix(".__init__")

    # the whole run
    def run(self) -> int:
        moves = self.plan_moves()
        for src, dst in moves:
            self.say(f"move {src.relative_to(self.root)} -> {dst.relative_to(self.root)}")
        # moves first (in the plan), so a split's target inside a moved package resolves
        moved_text = {dst: src.read_text(encoding="utf-8") for src, dst in moves}
        for src, dst in moves:
            self.removed.add(src)
            self.writes[dst] = moved_text[dst]
        for split in SPLITS:
            self.plan_split(split)
        for package, doc in PACKAGE_DOCS.items():
            init = self.root.joinpath(*package.split(".")) / "__init__.py"
            if self.read(init) is None:
                self.write(init, f'"""{doc}"""\n')
                self.say(f"create {init.relative_to(self.root)}")
        # every Python file, as it will be
        files = set()
        for base in PY_ROOTS:
            files |= {p for p in (self.root / base).rglob("*.py") if ".venv" not in p.parts}
        files |= {p for p in self.writes if p.suffix == ".py"}
        files -= self.removed
        files.discard(SELF)
        for path in sorted(files):
            text = self.read(path)
            if text is None:
                continue
            new = self.rewrite_python(path, text)
            new = self.rewrite_text(new, python=True)
            new = self.plan_renames(path, new)
            new = re.sub(r"(?<![\w/.\"'])DESIGN\.md", "docs/DESIGN.md", new)
            for before, after in TEXT_FIXES.get(str(path.relative_to(self.root)), []):
                new = new.replace(before, after)
            if new != text:
                self.write(path, new)
                self.touched.add(path)
        text_files = [self.root / f for f in TEXT_FILES]
        for pattern in TEXT_GLOBS:
            text_files += list(self.root.glob(pattern))
        for path in text_files:
            text = self.read(path)
            if text is None:
                continue
            new = self.rewrite_text(text, python=False)
            if new != text:
                self.write(path, new)
                self.say(f"rewrite {path.relative_to(self.root)}")
        # left over: mentions of a split module as a whole, which the tables cannot map
        gone = [s.source for s in SPLITS if not self.exists_after(s.source)]
        for path in sorted(files | set(text_files)):
            text = self.read(path) or ""
            for source in gone:
                for variant in (source, source.replace(".", "/") + ".py"):
                    for m in re.finditer(rf"(?<![\w./]){re.escape(variant)}(?![\w/])", text):
                        line = text.count("\n", 0, m.start()) + 1
                        self.say(
                            f"  note: {path.relative_to(self.root)}:{line}: names {variant}; edit by hand"
                        )
        changed = {p for p, t in self.writes.items() if not p.is_file() or p.read_text(encoding="utf-8") != t}
        if not changed and not [p for p in self.removed if p.is_file()]:
            self.say("nothing to do: the layout is already in place")
            return 0
        for path in sorted(p for p in changed if p.suffix == ".py"):
            compile(self.writes[path], str(path), "exec")  # refuse to write a file that does not parse
        if self.dry_run:
            self.say(f"dry run: {len(changed)} files would change, {len(moves)} moved")
            return 0
        for src, dst in moves:
            dst.parent.mkdir(parents=True, exist_ok=True)
            self.git("mv", src, dst) or shutil.move(src, dst)
        for path in sorted(p for p in self.removed if p.is_file()):
            self.git("rm", "-q", "-f", path) or path.unlink()
        for path in sorted(changed):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.writes[path], encoding="utf-8")
        self.git("add", "-A", "--", *[p for p in changed if p.suffix == ".py"])
        self.format([p for p in changed if p.suffix == ".py"], self.split_outputs & changed)
        self.say(f"done: {len(moves)} modules moved, {len(changed)} files written")
        return 0

    def git(self, *args) -> bool:
        if not (self.root / ".git").exists():
            return False
        proc = subprocess.run(["git", *map(str, args)], cwd=self.root, capture_output=True, text=True)
        return proc.returncode == 0

    def format(self, paths: list[Path], split_outputs: set[Path]) -> None:
        ruff = shutil.which("ruff") or str(self.root / ".venv/bin/ruff")
        if not Path(ruff).exists() and not shutil.which("ruff"):
            self.say("warning: ruff not found; run `ruff check --fix . && ruff format .` yourself")
            return
        rel = [str(p.relative_to(self.root)) for p in paths if p.is_file()]
        split_rel = [str(p.relative_to(self.root)) for p in split_outputs if p.is_file()]
        if split_rel:  # imports a split left unused (only there: tests import fixtures by name)
            subprocess.run([ruff, "check", "--fix", "--select", "F401", "-q", *split_rel], cwd=self.root)
        if rel:
            subprocess.run([ruff, "check", "--fix", "--select", "I", "-q", *rel], cwd=self.root)
            subprocess.run([ruff, "format", "-q", *rel], cwd=self.root)
            left = subprocess.run([ruff, "check", "-q", "--output-format", "concise", *rel], cwd=self.root,
                                  capture_output=True, text=True).stdout.strip()  # fmt: skip
            if left:
                self.say(
                    "ruff still reports (fix by hand; long lines are mostly DESIGN.md -> docs/DESIGN.md):"
                )
                self.say(left)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: cwd)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if not (root / PKG).is_dir():
        print(f"error: {root} has no {PKG}/ folder; run from the repository root", file=sys.stderr)
        return 2
    job = Restructure(root, args.dry_run)
    try:
        return job.run()
    except Ambiguous as exc:
        print(f"error: {exc} (nothing was changed)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
