"""The case manifest: one row per CT scan, the table every radhe step reads.

Reserved columns
----------------
``case_id``     unique identifier of the scan (required; stored as ``str``).
``image``       path to the CT volume: a file or a DICOM series folder (required).
``mask``        path to the haematoma mask (optional; empty where a case has none).
``patient_id``  identifier of the patient, for patient-grouped cross-validation (optional;
                defaults to ``case_id``, i.e. one scan per patient).

Every other column (clinical variables, NCCT marker flags, outcome labels) is passed through
unchanged. Relative paths are resolved against the manifest file's folder (or ``base_dir``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from radhe.constants import OUTCOME_COLUMNS
from radhe.errors import InputError, InputWarning, format_case
from radhe.io.image import is_missing_path

__all__ = ["load_manifest", "RESERVED_COLUMNS", "feature_columns"]

RESERVED_COLUMNS = ("case_id", "image", "mask", "patient_id")


def load_manifest(
    source: str | os.PathLike | pd.DataFrame,
    *,
    base_dir: str | os.PathLike | None = None,
    image_column: str = "image",
    mask_column: str = "mask",
) -> pd.DataFrame:
    """Read and validate a manifest table.

    The table's structure is checked here; the files themselves are read and checked by
    :func:`radhe.io.validate_manifest`, which is slower.

    Parameters
    ----------
    source : str, path-like or pandas.DataFrame
        A CSV (``.csv``), TSV (``.tsv``) or Parquet (``.parquet``, ``.pq``) file, or a DataFrame.
    base_dir : str or path-like, optional
        Folder against which relative paths resolve. Default: the manifest file's folder, or the
        current directory for a DataFrame.
    image_column, mask_column : str
        Names of the image and mask path columns.

    Returns
    -------
    pandas.DataFrame
        A copy, index preserved, with ``case_id`` and ``patient_id`` as strings (``patient_id``
        filled from ``case_id`` where missing), and image/mask paths absolute. Missing masks are ``None``.

    Raises
    ------
    radhe.errors.InputError
        The file cannot be read; a required column is missing; ``case_id`` is missing or duplicated;
        a case has no image path.
    """
    if isinstance(source, pd.DataFrame):
        frame = source.copy()
        origin = "manifest DataFrame"
        default_dir = Path.cwd()
    else:
        path = Path(source)
        origin = f"manifest '{path}'"
        frame = _read_table(path)
        default_dir = path.resolve().parent
    root = Path(base_dir) if base_dir is not None else default_dir

    repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    read = {"case_id", "patient_id", image_column, mask_column, *OUTCOME_COLUMNS}
    if any(c in read for c in repeated):
        raise InputError(f"{origin}: column name(s) {[c for c in repeated if c in read]} appear more than once; "
                         "each column radhe reads needs a name of its own (which one would be read?)")
    if repeated:
        # columns radhe does not read (an export's two "Comment" columns): told apart as pandas' CSV reader
        # does ("Comment.1"), and said
        original = [str(c) for c in frame.columns]
        names, seen, counts = [], set(original), {}
        for c in original:
            k = counts.get(c, 0)
            counts[c] = k + 1
            name = c
            while k and (name := f"{c}.{k}") in seen:
                k += 1
            seen.add(name)
            names.append(name)
        frame = frame.copy()
        frame.columns = names
        renamed = [n for n, o in zip(names, original, strict=True) if n != o]
        warnings.warn(f"{origin}: column name(s) {repeated} appear more than once; radhe does not read them, and "
                      f"the repeats are named {renamed[:10]}", InputWarning, stacklevel=2)
    missing = [c for c in ("case_id", image_column) if c not in frame.columns]
    if missing:
        raise InputError(
            f"{origin} lacks required column(s) {missing}; columns present: {list(frame.columns)}"
        )
    if frame["case_id"].isna().any():
        rows = [str(r) for r in frame.index[frame["case_id"].isna()][:5]]
        raise InputError(f"{origin}: case_id is empty in row(s) {', '.join(rows)}")
    frame["case_id"] = frame["case_id"].map(_as_id)
    blank = frame["case_id"] == ""
    if blank.any():
        rows = [str(r) for r in frame.index[blank][:5]]
        raise InputError(f"{origin}: case_id is blank in row(s) {', '.join(rows)}")
    duplicated = frame["case_id"][frame["case_id"].duplicated()].unique()
    if len(duplicated):
        raise InputError(f"{origin}: case_id must be unique; duplicated: {sorted(duplicated)[:10]}")

    no_image = frame[image_column].isna() | (frame[image_column].astype(str).str.strip() == "")
    if no_image.any():
        cases = ", ".join(format_case(c) for c in frame.loc[no_image, "case_id"][:5])
        raise InputError(f"{origin}: no '{image_column}' path for {cases}")
    for column in (image_column, mask_column):
        if column in frame.columns:
            resolved = [_resolve(p, root) for p in frame[column]]
            frame[column] = pd.Series(resolved, index=frame.index, dtype=object)

    if "patient_id" in frame.columns:
        patient = frame["patient_id"].astype(object)
        frame["patient_id"] = [
            _as_id(p) if not is_missing_path(p) else c for p, c in zip(patient, frame["case_id"], strict=True)
        ]
    else:
        frame["patient_id"] = frame["case_id"]
    frame.attrs["manifest_dir"] = str(root)
    return frame


def feature_columns(manifest: pd.DataFrame, *, exclude: tuple[str, ...] = ()) -> list[str]:
    """Return the manifest's non-reserved columns (clinical variables, labels, precomputed features)."""
    reserved = set(RESERVED_COLUMNS) | set(exclude)
    return [c for c in manifest.columns if c not in reserved]


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise InputError(f"manifest file not found: '{path}'", path=path)
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        # identifiers stay text: "007" must not become 7 (and collide with "7")
        ids = {"case_id": str, "patient_id": str}
        if name.endswith((".tsv", ".csv")):
            sep = "\t" if name.endswith(".tsv") else ","
            frame = pd.read_csv(path, sep=sep, dtype=ids)
            # pandas renames a repeated header ("image", "image.1"): keep the names as written, so that
            # the repetition is refused instead of the second column being silently ignored
            header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str).iloc[0]
            if len(header) == frame.shape[1] and header.dropna().duplicated().any():
                frame.columns = [name if pd.isna(written) else written
                                 for written, name in zip(header, frame.columns, strict=True)]
            return frame
    except Exception as exc:  # pandas raises many types for a malformed table
        raise InputError(f"cannot read manifest '{path}': {exc}", path=path) from None
    raise InputError(f"manifest '{path}' must be .csv, .tsv or .parquet", path=path)


def _as_id(value: object) -> str:
    # 17.0 read from a CSV column with gaps should stay "17".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _resolve(value: object, root: Path) -> str | None:
    if is_missing_path(value):
        return None
    path = Path(str(value).strip()).expanduser()
    return str(path if path.is_absolute() else (root / path))
