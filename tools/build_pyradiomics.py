"""Build and install pyradiomics 3.1.0 from its source archive, repairing the archive's two defects.

PyPI has no pyradiomics 3.1.0 wheel for Python >= 3.10, and its source archive

* declares ``version = "3.0.1a1"`` in pyproject.toml, so ``pip install pyradiomics==3.1.0`` discards
  it as inconsistent (and an unpinned install silently falls back to 3.0.1), and
* omits the C headers ``radiomics/src/cmatrices.h`` and ``cshape.h``, so the C extensions do not compile.

This script downloads the archive (SHA-256 checked), unpacks it, writes the version it really is,
generates each missing header from the prototypes of the functions defined in the matching ``.c``
file of the same archive, and installs the result with ``--no-build-isolation`` (its setup.py
imports numpy, which must already be installed).

Usage: python tools/build_pyradiomics.py WORK_DIR
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fetch_sdist import fetch  # noqa: E402

NAME, VERSION = "pyradiomics", "3.1.0"
SHA256 = "24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4"
_DEFINITION = re.compile(
    r"^(?:int|double|void|char|size_t)\s+\**\s*\w+\s*\([^;{]*?\)\s*(?=\{)", re.MULTILINE | re.DOTALL
)


def header_from_source(c_source: str) -> str:
    """Return a header declaring every top-level function defined in ``c_source``."""
    prototypes = [" ".join(m.group(0).split()) + ";" for m in _DEFINITION.finditer(c_source)]
    if not prototypes:
        raise RuntimeError("no function definitions found")
    return "#include <stddef.h>\n" + "\n".join(prototypes) + "\n"


def main(work_dir: str) -> None:
    archive = fetch(NAME, VERSION, SHA256, work_dir)
    source_dir = os.path.join(work_dir, f"{NAME}-{VERSION}")
    if not os.path.isdir(source_dir):
        with tarfile.open(archive) as tar:
            tar.extractall(work_dir, filter="data")
    pyproject = os.path.join(source_dir, "pyproject.toml")
    text = open(pyproject).read()
    open(pyproject, "w").write(re.sub(r'(?m)^version = ".*"$', f'version = "{VERSION}"', text))
    src = os.path.join(source_dir, "radiomics", "src")
    for stem in ("cmatrices", "cshape"):
        header = os.path.join(src, stem + ".h")
        if not os.path.exists(header):
            with open(os.path.join(src, stem + ".c")) as fh:
                code = fh.read()
            with open(header, "w") as fh:
                fh.write(header_from_source(code))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", source_dir],
        check=True,
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
