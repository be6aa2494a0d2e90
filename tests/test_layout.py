"""Import rules of the package layout, checked on the source (`ast`) and in a fresh process."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "gpt2qa"

# Existing imports of another module's _private name, in files being rewritten elsewhere:
# being removed by the W3-1 engine refactor. Each entry: (importing file, module, name).
ALLOWED_PRIVATE_IMPORTS = {
    ("hotpot_features.py", "gpt2qa.features", "_assemble"),
    ("hotpot_features.py", "gpt2qa.features", "_encode"),
}


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
