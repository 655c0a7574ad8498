"""Packaging: the library does not depend on its apps, and pipelines are found through entry points."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import joblib
import pytest

from radhe.cli import PIPELINE_ENTRY_POINT_GROUP, available_pipelines, load_pipeline_module, main

REPO_ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ("zhong2021", "teng2021", "bo2023", "xu2021", "ohkita")


def test_importing_every_radhe_module_imports_no_app():
    """radhe never imports the pipelines (neither as ``pipelines`` nor as ``radhe_pipelines``)."""
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        import radhe
        names = [m.name for m in pkgutil.walk_packages(radhe.__path__, "radhe.")]
        for name in names:
            importlib.import_module(name)
        apps = sorted(m for m in sys.modules if m.split(".")[0] in ("pipelines", "radhe_pipelines"))
        print(len(names), apps)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path.home(),
                         timeout=300)
    assert out.returncode == 0, out.stderr
    count, apps = out.stdout.split(" ", 1)
    assert int(count) > 30 and apps.strip() == "[]"


def test_wheel_holds_every_module_and_no_bare_pipelines_package(tmp_path):
    """The built wheel has every file of radhe/ and pipelines/ (as radhe_pipelines) and nothing named ``pipelines``."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "setup.cfg", "LICENSE"):
        shutil.copy(REPO_ROOT / name, source / name)
    for folder in ("radhe", "pipelines"):
        shutil.copytree(REPO_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "dist").glob("radhe-*.whl")
    files = set(zipfile.ZipFile(wheel).namelist())
    top_level = {f.split("/")[0] for f in files if not f.split("/")[0].endswith((".dist-info", ".data"))}
    assert top_level == {"radhe", "radhe_pipelines"}
    expected = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "radhe").rglob("*.py")}
    expected |= {"radhe_pipelines/" + p.name for p in (REPO_ROOT / "pipelines").glob("*.py")}
    assert expected - files == set(), "modules missing from the wheel: list their package in pyproject.toml"
    weights = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "radhe" / "nn" / "weights").glob("*.*")}
    assert weights and weights - files == set(), "the shipped weights are package data of radhe.nn"
    assert any(f.endswith(".dist-info/licenses/LICENSE") or f.endswith(".dist-info/LICENSE") for f in files)
    entry_points = next(f for f in files if f.endswith(".dist-info/entry_points.txt"))
    registered = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert f"[{PIPELINE_ENTRY_POINT_GROUP}]" in registered
    for name in PUBLISHED:
        assert f"{name} = radhe_pipelines.{name}" in registered


def test_published_pipelines_are_registered_entry_points():
    names = available_pipelines()
    assert set(PUBLISHED) | {"default"} <= set(names)
    for name in PUBLISHED:
        module = load_pipeline_module(name)
        assert module.__name__ == f"radhe_pipelines.{name}" and callable(module.build_pipeline)


@pytest.fixture
def lab_package(tmp_path, monkeypatch):
    """An installed third-party package registering a pipeline ``mylab`` (a dist-info folder on sys.path)."""
    site = tmp_path / "site"
    (site / "mylab_radhe").mkdir(parents=True)
    (site / "mylab_radhe" / "__init__.py").write_text(textwrap.dedent("""
        import radhe

        def build_pipeline(random_state=None):
            # a lab's own method: the tabular path on the manifest's clinical columns only
            return radhe.make_pipeline(radiomics=None, fusion="concat", random_state=random_state)
    """))
    dist = site / "mylab_radhe-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mylab-radhe\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{PIPELINE_ENTRY_POINT_GROUP}]\nmylab = mylab_radhe\n"
                                           "broken = mylab_radhe_missing\ndup = mylab_radhe\n"
                                           "default = mylab_radhe\n")
    other = site / "otherlab-0.2.dist-info"  # a second package claiming the name "dup"
    other.mkdir()
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: otherlab\nVersion: 0.2\n")
    (other / "entry_points.txt").write_text(f"[{PIPELINE_ENTRY_POINT_GROUP}]\ndup = otherlab_method\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return site


def test_a_lab_registers_its_own_pipeline_without_editing_radhe(lab_package, small_cohort, tmp_path, capsys):
    assert {"mylab", "broken"} <= set(available_pipelines())
    manifest = Path(small_cohort["image"].iloc[0]).parent.parent / "manifest.csv"
    out = tmp_path / "mylab.joblib"
    assert main(["fit", "--manifest", str(manifest), "--pipeline", "mylab", "--out", str(out)]) == 0
    assert "fitted pipeline 'mylab'" in capsys.readouterr().out
    model = joblib.load(out)
    assert model.predict_proba(small_cohort)[:, 1].shape == (len(small_cohort),)
    # a registration that cannot be imported is named, with what it points at
    assert main(["fit", "--manifest", str(manifest), "--pipeline", "broken", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "pipeline 'broken' is registered as 'mylab_radhe_missing' but cannot be loaded" in err
    assert main(["fit", "--manifest", str(manifest), "--pipeline", "nosuch", "--out", str(out)]) == 1
    assert "unknown pipeline 'nosuch'; available:" in capsys.readouterr().err
    # two packages registering one name: refused, naming both; "default" stays radhe's own
    assert main(["fit", "--manifest", str(manifest), "--pipeline", "dup", "--out", str(out)]) == 1
    assert "registered by more than one installed package (mylab_radhe, otherlab_method)" in capsys.readouterr().err
    assert available_pipelines().count("default") == 1


def test_models_pickled_under_the_old_module_paths_still_load():
    import pickle

    from radhe.features import CNNEmbedder
    from radhe.segmentation import HematomaSegmenter

    for obj, new, old in ((CNNEmbedder(epochs=3), b"radhe.nn.embedder", b"radhe.features.cnn"),
                          (HematomaSegmenter(levels=3), b"radhe.nn.segmenter", b"radhe.segmentation.segmenter")):
        text = pickle.dumps(obj, protocol=0)
        assert new in text
        loaded = pickle.loads(text.replace(new, old))
        assert type(loaded) is type(obj) and loaded.get_params() == obj.get_params()


def _imported_modules(path: Path, module: str, known: set[str]) -> set[str]:
    """The radhe modules ``module`` imports anywhere (top level and inside functions)."""
    import ast

    def resolve(target: str):
        parts = target.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in known:
                return ".".join(parts[:i])
        return None

    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {resolve(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parents + ([base] if base else []))
            found |= {resolve(f"{base}.{alias.name}") or resolve(base) for alias in node.names}
    return found - {None, module}


def test_radhe_has_no_import_cycle_not_even_through_function_level_imports():
    files = {}
    for path in (REPO_ROOT / "radhe").rglob("*.py"):
        name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
        files[name] = path
    graph = {name: _imported_modules(path, name, set(files)) for name, path in files.items()}
    assert graph["radhe.nn.segmenter"] >= {"radhe.nn.base", "radhe.nn.training"}  # the scan sees imports

    def reachable(start):
        seen, frontier = set(), set(graph[start])
        while frontier:
            seen |= frontier
            frontier = set().union(*(graph[m] for m in frontier)) - seen
        return seen

    cycles = sorted(name for name in graph if name in reachable(name))
    assert cycles == [], f"modules on an import cycle: {cycles}"


def test_licence_citation_and_changelog_describe_this_version():
    import yaml

    import radhe

    assert "BSD 3-Clause License" in (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")
    citation = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert str(citation["version"]) == radhe.__version__ and citation["license"] == "BSD-3-Clause"
    assert citation["title"].startswith("radhe") and citation["authors"]
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{radhe.__version__}]" in changelog and "## [Unreleased]" in changelog
