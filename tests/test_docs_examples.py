"""Every ```python block in README.md and docs/*.md runs, so examples cannot rot.

Blocks of one page run in order in one namespace, in a fresh temporary folder. A block preceded by
the line ``<!-- no-run -->`` is shown but not run (e.g. one that needs a real cluster).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
_BLOCK = re.compile(r"(?P<marker><!-- no-run -->\s*\n)?```python[ \t]*\n(?P<code>.*?)\n```", re.DOTALL)


def python_blocks(page: Path) -> list[str]:
    return [m.group("code") for m in _BLOCK.finditer(page.read_text()) if not m.group("marker")]


def test_pages_are_found():
    assert (ROOT / "README.md") in PAGES
    assert python_blocks(ROOT / "README.md"), "README.md must show a runnable example"


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
