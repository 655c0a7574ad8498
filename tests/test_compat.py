"""Architecture rules: scikit-learn's privates only in radhe/_compat.py; no import cycle with evaluation."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import radhe

PACKAGE = Path(radhe.__file__).parent

#: an import of an underscore name (or from an underscore module) of scikit-learn / imbalanced-learn
_PRIVATE_IMPORT = re.compile(
    r"^\s*(?:from\s+(?:sklearn|imblearn)(?:\.\w+)*\s+import\s+[^#\n]*\b_\w+"
    r"|from\s+(?:sklearn|imblearn)(?:\.\w+)*\._\w+"
    r"|import\s+(?:sklearn|imblearn)(?:\.\w+)*\._\w+)",
    re.MULTILINE,
)
#: private methods / attributes of scikit-learn and imbalanced-learn objects
_PRIVATE_ATTRIBUTE = re.compile(
    r"\.(?:_final_estimator|_validate_params|_get_tags|_more_tags|_check_n_features|_check_feature_names"
    r"|_validate_data|_get_param_names|_iter|_get_params|_set_params|_replace_estimator)\b|__dict__\[")


def _sources():
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "_compat.py"]


def test_private_sklearn_and_imblearn_names_only_in_the_compat_module():
    offenders = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for match in list(_PRIVATE_IMPORT.finditer(text)) + list(_PRIVATE_ATTRIBUTE.finditer(text)):
            line = text.count("\n", 0, match.start()) + 1
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {match.group(0).strip()}")
    assert not offenders, "use public API or go through radhe/_compat.py:\n" + "\n".join(offenders)


def test_compat_module_documents_every_private_import():
    text = (PACKAGE / "_compat.py").read_text(encoding="utf-8")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if _PRIVATE_IMPORT.match(line):
            assert lines[i - 1].lstrip().startswith("#"), f"no comment above {line!r}"


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(m for m in sys.modules if m.startswith('radhe'))))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_baselines_and_families_do_not_import_evaluation():
    # evaluation uses the baselines (its comparison table); the reverse edge made a cycle
    for module in ("radhe.baselines", "radhe.families", "radhe.constants", "radhe._checks"):
        loaded = _modules_after_import(module)
        assert not any(m.startswith("radhe.evaluation") for m in loaded), (module, sorted(loaded))


def test_constants_are_defined_once():
    from radhe.baselines import NCCT_MARKERS as baseline_markers
    from radhe.constants import MARKER_LABELS, NCCT_MARKERS, OUTCOME_COLUMNS
    from radhe.datasets import MARKER_COLUMNS
    from radhe.datasets import OUTCOME_COLUMNS as cohort_outcomes
    from radhe.features.tabular import OUTCOME_COLUMNS as tabular_outcomes

    assert baseline_markers is NCCT_MARKERS and MARKER_COLUMNS is NCCT_MARKERS
    assert cohort_outcomes is OUTCOME_COLUMNS and tabular_outcomes is OUTCOME_COLUMNS
    # the marker classifier's labels are manifest marker columns
    assert set(MARKER_LABELS) <= set(NCCT_MARKERS)
