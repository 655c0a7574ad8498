"""The documentation site builds with ``mkdocs build --strict``, renders cross-references as working
links, shows no raw Sphinx role, and loads nothing from the network.

Needs the docs tooling (``pip install -e ".[docs]"``; ``make install`` includes it): skipped without.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]

if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings_handlers") is None:
    pytest.skip('docs tooling not installed (pip install -e ".[docs]")', allow_module_level=True)

RAW_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj):")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)


class _Page(HTMLParser):
    """Collects a page's ids, links, and the URLs of its scripts and stylesheets."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.assets = set(), [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href") is not None:
            self.links.append(attrs["href"])
        if tag == "script" and attrs.get("src"):
            self.assets.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.assets.append(attrs["href"])
        if tag in ("img", "iframe", "source", "video", "audio") and attrs.get("src"):
            self.assets.append(attrs["src"])


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-6000:]}"
    return out


def _pages(site: Path) -> dict[Path, tuple[str, _Page]]:
    pages = {}
    for path in sorted(site.rglob("*.html")):
        text = path.read_text(encoding="utf-8")
        parser = _Page()
        parser.feed(text)
        pages[path] = (text, parser)
    return pages


def test_no_raw_sphinx_role_in_any_page(site):
    leftovers = {str(path.relative_to(site)): RAW_ROLE.findall(text)
                 for path, (text, _) in _pages(site).items() if RAW_ROLE.search(text)}
    assert leftovers == {}


def test_roles_became_links_to_the_api_reference(site):
    text = (site / "api" / "index.html").read_text(encoding="utf-8")
    # radhe.io.image.read_dicom_series: "(see :func:`read_image`)" -> a link to read_image's section
    assert re.search(r'<a class="autorefs autorefs-internal"[^>]*href="#radhe\.io\.image\.read_image">'
                     r'<code>read_image\(\)</code></a>', text)
    # an alias is linked at the object's defining module: radhe.make_pipeline -> radhe.pipeline.make_pipeline
    assert 'href="#radhe.pipeline.make_pipeline"><code>radhe.make_pipeline()</code>' in text
    assert len(re.findall(r'class="autorefs autorefs-internal"', text)) > 150
    # a reference outside the site (scikit-learn) stays inline code, without a dead link
    assert "<code>GridSearchCV</code>" in text


def test_runtime_docstrings_of_deep_learning_estimators(site):
    text = (site / "api" / "index.html").read_text(encoding="utf-8")
    section = text[text.index('id="radhe.nn.segmenter.HematomaSegmenter"'):]
    table = section[:section.index("</table>")]
    assert "[shared:" not in section[:section.index('class="doc doc-children"')]
    # "device" and "verbose" are documented only through "[shared: ...]" lines expanded at import time
    assert "<code>device</code>" in table and "<code>verbose</code>" in table


def test_every_internal_link_resolves(site):
    pages = _pages(site)
    broken = []
    for path, (_, page) in pages.items():
        base = path.relative_to(site).as_posix()
        for href in page.links:
            if EXTERNAL.match(href) or href.startswith(("mailto:", "javascript:")):
                continue
            url = urlparse(urljoin(f"http://site/{base}", href))
            target = site / unquote(url.path).lstrip("/")
            if target.is_dir() or url.path.endswith("/"):
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{base}: {href} (no file {target.relative_to(site)})")
            elif url.fragment and target.suffix == ".html" and unquote(url.fragment) not in pages[target][1].ids:
                broken.append(f"{base}: {href} (no id '{url.fragment}' in {target.relative_to(site)})")
    assert broken == []


def test_site_loads_nothing_from_the_network(site):
    remote = [f"{path.relative_to(site)}: {asset}" for path, (_, page) in _pages(site).items()
              for asset in page.assets if EXTERNAL.match(asset)]
    assert remote == []
    css_remote = [str(p.relative_to(site)) for p in site.rglob("*.css")
                  if re.search(r"(?:url\(\s*['\"]?|@import\s+['\"])(?:https?:)?//", p.read_text(encoding="utf-8"))]
    assert css_remote == []
    # code is highlighted at build time (Pygments), with the stylesheet the hook generates
    index = (site / "index.html").read_text(encoding="utf-8")
    assert 'class="codehilite"' in index and (site / "css" / "pygments.css").stat().st_size > 1000
    assert "hljs" not in index


# ------------------------------------------------------------------------- the griffe extension alone
def _load(tmp_path, source: str, api: str):
    import griffe

    spec = importlib.util.spec_from_file_location("docs_griffe", ROOT / "tools" / "docs_griffe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    RadheDocstrings = module.RadheDocstrings  # noqa: N806

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text(source)
    (tmp_path / "api.md").write_text(api)
    extension = RadheDocstrings(api_page=str(tmp_path / "api.md"))
    return griffe.load("pkg", search_paths=[str(tmp_path)], extensions=griffe.load_extensions(extension))


def test_role_forms_are_rewritten(tmp_path):
    source = '''"""Module."""
from collections import OrderedDict


def target():
    """Documented."""


def _private():
    """Private."""


def undocumented():
    pass


class Thing:
    """See :meth:`run`, :func:`~pkg.target`, :class:`the thing <pkg.Thing>`, :func:`!target`."""

    def run(self):
        """Run; :class:`OrderedDict` and :mod:`numpy` are not in the site, nor :func:`_private`."""


def user(labels=None):
    """Use :func:`target` and :func:`undocumented`.

    Parameters
    ----------
    labels : list, default :data:`Thing`
        The labels (:class:`Thing`).
    """
'''
    package = _load(tmp_path, source, "::: pkg\n")
    assert package["Thing"].docstring.value == (
        "See [`run()`][pkg.Thing.run], [`target()`][pkg.target], [`the thing`][pkg.Thing], `target()`.")
    assert package["Thing.run"].docstring.value == (
        "Run; `OrderedDict` and `numpy` are not in the site, nor `_private()`.")
    user = package["user"].docstring.value
    assert user.startswith("Use [`target()`][pkg.target] and `undocumented()`.")
    assert "labels : list, default Thing\n" in user  # a type/default renders as code: the bare name
    assert "The labels ([`Thing`][pkg.Thing])." in user


def test_objects_of_modules_not_on_the_api_page_are_not_linked(tmp_path):
    package = _load(tmp_path, '"""See :func:`target`."""\n\n\ndef target():\n    """Documented."""\n',
                    "::: other\n")
    assert package.docstring.value == "See `target()`."
