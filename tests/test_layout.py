"""Import rules of the package layout, checked on the source (`ast`) and in a fresh process."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "gpt2qa"

# Imports of another module's _private name that are still allowed: (file, module, name).
ALLOWED_PRIVATE_IMPORTS: set[tuple[str, str, str]] = set()

EDGES = ("cli/", "serve/", "study/", "tasks/", "__init__.py", "pipeline.py", "demo.py",
         "hotpot_demo.py")
"""Where a task may be chosen (by name or from the registry); everything else is the engine,
which sees a task only as the `gpt2qa.task.Task` it is handed."""
TASK_NAMES = {"squad", "hotpotqa", "hotpot"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_module(node: ast.ImportFrom, path: Path) -> str:
    """The absolute module a `from ... import` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def private_imports() -> set[tuple[str, str, str]]:
    """(file relative to the package, module, name) for every `from gpt2qa... import _name`."""
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            module = _imported_module(node, path)
            if module != "gpt2qa" and not module.startswith("gpt2qa."):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.add((path.relative_to(PACKAGE).as_posix(), module, alias.name))
    return found


def test_no_module_imports_another_modules_private_name():
    found = private_imports()
    assert found - ALLOWED_PRIVATE_IMPORTS == set(), (
        "import a public name instead (rename it in its home module)")


def test_private_import_allow_list_has_no_stale_entries():
    # When the refactor removes one, drop it here too, so the list only ever shrinks.
    assert ALLOWED_PRIVATE_IMPORTS <= private_imports()


def _modules_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", f"import sys; {code}; print(*sorted(sys.modules))"],
                         capture_output=True, text=True, timeout=120, check=True,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}).stdout
    return out.split()


def test_cli_package_and_flags_do_not_import_each_other_while_loading():
    assert "gpt2qa.cli.flags" not in _modules_after("import gpt2qa.cli")
    loaded = _modules_after("import gpt2qa.cli.flags")
    assert "gpt2qa.cli.flags" in loaded and "torch" not in loaded


def test_serve_package_does_not_import_the_cli():
    loaded = _modules_after("import gpt2qa.serve; gpt2qa.serve.ServeSettings")
    assert not [m for m in loaded if m == "gpt2qa.cli" or m.startswith("gpt2qa.cli.")]


def _engine_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py"))
            if not p.relative_to(PACKAGE).as_posix().startswith(EDGES)]


def _imports(path: Path) -> set[str]:
    """Every gpt2qa module a file imports, with `from gpt2qa import x` as gpt2qa.x."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = _imported_module(node, path)
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_the_engine_never_imports_a_task():
    engine = _engine_modules()
    assert len(engine) > 20 and any(p.name == "train.py" for p in engine)
    offenders = {p.relative_to(PACKAGE).as_posix(): sorted(
        m for m in _imports(p) if m == "gpt2qa.tasks" or m.startswith("gpt2qa.tasks."))
        for p in engine}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_tasks_import_the_engine():
    # The plug-in direction: the tasks build on the engine's stages (not on each other's code).
    squad = _imports(PACKAGE / "tasks" / "squad.py")
    hotpot = set().union(*(_imports(p) for p in (PACKAGE / "tasks" / "hotpotqa").glob("*.py")))
    for uses in (squad, hotpot):
        assert {"gpt2qa.task", "gpt2qa.features", "gpt2qa.decode"} <= uses
    assert not [m for m in hotpot if m.startswith("gpt2qa.tasks.squad")]
    assert not [m for m in squad if m.startswith("gpt2qa.tasks.hotpotqa")]


def test_no_task_name_is_compared_below_the_edges():
    found = []
    for path in _engine_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.Compare):
                continue
            names = {c.value for c in ast.walk(node) if isinstance(c, ast.Constant)}
            if names & TASK_NAMES:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == []



TESTS = Path(__file__).resolve().parent
LOCAL_ROOTS = {"tests"} | {p.name for p in TESTS.rglob("*") if p.is_dir()}
"""First parts of a dotted name that point inside tests/ (tests itself or one of its folders)."""


def _is_conftest_or_test_module(module: str) -> bool:
    """conftest anywhere in the dotted name, or a test_* part of a name inside tests/."""
    parts = module.split(".")
    if "conftest" in parts:
        return True
    if len(parts) > 1 and parts[0] not in LOCAL_ROOTS:
        return False  # e.g. `from gpt2qa.x import test_y`: not a test module
    return any(p.startswith("test_") for p in parts)


def conftest_and_test_module_imports(source: str) -> list[tuple[int, str]]:
    """(line, module), once per statement, for each import of conftest or of a test module in
    `source`: `import`, `from ... import` (relative ones count as inside tests/),
    importlib.import_module and __import__ with a literal name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(filter(None, ["tests", base]))
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "__import__"))):
            names = [node.args[0].value]
        bad = [name for name in names if name and _is_conftest_or_test_module(name)]
        if bad:
            found.append((node.lineno, bad[0]))
    return found


def test_the_import_check_sees_every_form():
    bad = ("from conftest import CORPUS\nimport conftest\nfrom test_backbones import FAMILIES\n"
           "import tests.test_lora\nfrom tests import test_data\nfrom . import conftest\n"
           "from tasks.hotpotqa import test_hotpot_data\n"
           "importlib.import_module('test_model')\n__import__('conftest')\n")
    assert [line for line, _ in conftest_and_test_module_imports(bad)] == list(range(1, 10))
    good = ("from builders import CORPUS, squad_v2_dict\nfrom families import FAMILIES\n"
            "from helpers import tiny_model\nimport pytest\nfrom gpt2qa.x import test_y\n")
    assert conftest_and_test_module_imports(good) == []


def test_no_test_file_imports_conftest_or_another_test_module():
    # Shared builders are fixtures (conftest.py) or live in a non-test module (builders.py,
    # families.py, helpers.py); conftest.py files may import those too.
    files = sorted(TESTS.rglob("*.py"))
    assert TESTS / "conftest.py" in files and Path(__file__).resolve() in files
    found = [f"{path.relative_to(TESTS).as_posix()}:{line}: {name}" for path in files
             for line, name in conftest_and_test_module_imports(path.read_text(encoding="utf-8"))]
    assert found == [], "take a fixture, or import from builders.py / families.py / helpers.py"
