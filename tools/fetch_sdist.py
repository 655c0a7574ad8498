"""Download an exact source release from the package index pip is configured to use.

pyradiomics 3.1.0's source archive reports version 3.0.1a1 when built outside a git checkout, so
``pip install pyradiomics==3.1.0`` discards it as inconsistent and silently falls back to 3.0.1.
Installing the downloaded archive by path skips that check. The archive's SHA-256 is verified.

Usage: python tools/fetch_sdist.py NAME VERSION SHA256 DEST_DIR  (prints the archive's path)
"""

from __future__ import annotations

import hashlib
import html.parser
import os
import subprocess
import sys
import urllib.parse
import urllib.request


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def _index_url() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()
    if out:
        return out.rstrip("/")
    from pip._internal.models.index import PyPI

    return PyPI.simple_url.rstrip("/")


def fetch(name: str, version: str, sha256: str, dest: str) -> str:
    """Download ``name-version.tar.gz`` into ``dest`` (unless already there) and return its path."""
    filename = f"{name}-{version}.tar.gz"
    target = os.path.join(dest, filename)
    if os.path.exists(target) and hashlib.sha256(open(target, "rb").read()).hexdigest() == sha256:
        return target
    page_url = f"{_index_url()}/{name}/"
    with urllib.request.urlopen(page_url, timeout=120) as response:
        parser = _Links()
        parser.feed(response.read().decode("utf-8", "replace"))
    matches = [h for h in parser.links if urllib.parse.urlsplit(h).path.endswith("/" + filename)]
    if not matches:
        sys.exit(f"fetch_sdist: {filename} not listed at {page_url}")
    url = urllib.parse.urljoin(page_url, matches[0]).split("#", 1)[0]
    with urllib.request.urlopen(url, timeout=300) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        sys.exit(f"fetch_sdist: {filename} has sha256 {digest}, expected {sha256}")
    os.makedirs(dest, exist_ok=True)
    with open(target, "wb") as fh:
        fh.write(data)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    print(fetch(*sys.argv[1:]))
