"""Every ```python block in README.md and docs/*.md runs, so examples cannot rot.

Blocks of one page run in order in one namespace, in a fresh temporary folder. A block preceded by
the line ``<!-- no-run -->`` is shown but not run (e.g. one that needs a real cluster). A block
preceded by ``<!-- script -->`` is a whole program meant to be saved as a file: it is written to a
``.py`` file and run with this Python as a script in its own process (slow: ``make test-all``),
and the default run checks that it keeps its work under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
_BLOCK = re.compile(
    r"(?:<!-- (?P<marker>no-run|script) -->\s*\n)?```python[ \t]*\n(?P<code>.*?)\n```", re.DOTALL)


def python_blocks(page: Path, marker: str | None = None) -> list[str]:
    """The page's Python blocks with ``marker`` (None: the unmarked blocks, run in one namespace)."""
    return [m.group("code") for m in _BLOCK.finditer(page.read_text()) if m.group("marker") == marker]


SCRIPTS = [(page, number, code) for page in PAGES
           for number, code in enumerate(python_blocks(page, "script"), start=1)]
_SCRIPT_IDS = [f"{page.relative_to(ROOT)}[script {number}]" for page, number, _ in SCRIPTS]


def test_pages_are_found():
    assert (ROOT / "README.md") in PAGES
    assert python_blocks(ROOT / "README.md"), "README.md must show a runnable example"
    assert SCRIPTS, "docs/extraction.md shows the Dask example as a script"


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": "__docs__"}
    for number, code in enumerate(python_blocks(page), start=1):
        try:
            exec(compile(code, f"{page.name}[block {number}]", "exec"), namespace)
        except Exception as exc:  # re-raise with the page and block named
            raise AssertionError(f"{page.relative_to(ROOT)} block {number} failed: {exc!r}") from exc
    assert os.getcwd() == str(tmp_path)


def _unguarded_statements(code: str) -> list[str]:
    """Top-level statements of a script that would run when a worker process imports it."""
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    problems = []
    for node in ast.parse(code).body:
        if isinstance(node, allowed) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            continue
        if isinstance(node, ast.If) and ast.unparse(node.test).replace("'", '"') == '__name__ == "__main__"':
            continue
        problems.append(f"line {node.lineno}: {ast.unparse(node).splitlines()[0]}")
    return problems


@pytest.mark.parametrize(("page", "number", "code"), SCRIPTS, ids=_SCRIPT_IDS)
def test_script_examples_keep_their_work_under_a_main_guard(page, number, code):
    assert "if __name__ == \"__main__\":" in code, f"{page.name} script {number} has no main guard"
    assert _unguarded_statements(code) == [], f"{page.name} script {number} runs code at import time"


def test_the_guard_check_can_fail():
    assert _unguarded_statements("import os\ncluster = start()\nif __name__ == '__main__':\n    main()\n") == [
        "line 2: cluster = start()"]
    assert _unguarded_statements("def main():\n    pass\nif __name__ == '__main__':\n    main()\n") == []


@pytest.mark.slow
@pytest.mark.parametrize(("page", "number", "code"), SCRIPTS, ids=_SCRIPT_IDS)
def test_script_examples_run_as_scripts(page, number, code, tmp_path):
    script = tmp_path / f"{page.stem}_script{number}.py"
    script.write_text(code + "\n")
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{page.name} script {number} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
