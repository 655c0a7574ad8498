"""MkDocs hooks of the documentation build (``hooks:`` in ``mkdocs.yml``).

The site must work offline, so the theme's highlight.js (loaded from a CDN) is switched off in
``mkdocs.yml`` and code is highlighted at build time by Pygments (the ``codehilite`` Markdown
extension, also used by mkdocstrings for signatures). This hook adds the matching stylesheet,
generated from the installed Pygments, as ``css/pygments.css`` (listed under ``extra_css``).
"""

from __future__ import annotations

from mkdocs.structure.files import File, Files
from pygments.formatters import HtmlFormatter

STYLESHEET = "css/pygments.css"


def on_files(files: Files, *, config) -> Files:
    css = HtmlFormatter(style="default").get_style_defs(".codehilite")
    files.append(File.generated(config, STYLESHEET, content=css))
    return files
