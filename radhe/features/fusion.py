"""Fusion of feature branches (radiomics, CNN, clinical, precomputed) into one table."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from radhe._compat import BaseComposition, get_composite_params, set_composite_params
from radhe.errors import ConfigurationError, InputError

__all__ = ["FeatureFusion"]


def _n_rows(X) -> int:
    """Number of rows of a table, array, array-like or list of rows."""
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    if hasattr(X, "__len__"):
        return len(X)
    return int(np.asarray(X).shape[0])


def _table_branches_first(branches) -> list[int]:
    """Positions of ``branches``, those that only read the table (cheap, no image) first."""
    from radhe.features.tabular import _TableTransformer

    return sorted(range(len(branches)), key=lambda i: not isinstance(branches[i][1], _TableTransformer))


def _no_features(fitted, X) -> str:
    """The message of a fusion whose branches produced no column."""
    parts = []
    for name, branch in fitted:
        dropped = getattr(branch, "dropped_columns_", None)
        if dropped:
            listing = "; ".join(f"'{k}' ({v})" for k, v in dropped.items())
            parts.append(f"branch '{name}' left out {listing}")
        else:
            parts.append(f"branch '{name}' found no column to use")
    columns = list(X.columns) if isinstance(X, pd.DataFrame) else None
    present = f"; the table's columns: {columns}" if columns is not None else ""
    return (
        f"FeatureFusion: the feature branches produced no feature for the {_n_rows(X)} cases: {', '.join(parts)}"
        f"{present}. Identifiers (case_id, patient_id, *_id), file paths, outcome columns and (by default) the site "
        "are never features; add feature columns, or name them with columns=[...]"
    )


class FeatureFusion(TransformerMixin, BaseComposition):
    """Give the whole manifest to every branch and concatenate their outputs column-wise.

    Unlike :class:`sklearn.compose.ColumnTransformer`, each branch receives the full DataFrame
    (it chooses its own columns: image paths, masks, clinical variables), and unlike
    :class:`sklearn.pipeline.FeatureUnion` rows are checked for alignment instead of silently
    joined on the index.

    The branches that only read the table (:class:`~radhe.features.ClinicalFeatures`,
    :class:`~radhe.features.TabularFeatures`) are fitted and applied first, so a bad clinical
    column is reported before any image is read; the output keeps the order of ``transformers``.

    Parameters
    ----------
    transformers : list of (str, transformer)
        Branches, e.g. ``[("radiomics", RadiomicsFeatures()), ("clinical", ClinicalFeatures())]``.
        The name is the feature family: a branch column not already named ``<family>__<name>`` gets
        the prefix ``<branch name>__``. A transformer may be ``"drop"`` or ``None`` to switch the
        branch off (handy in a parameter grid, e.g. ``{"features__cnn": ["drop", embedder]}``).
        Nested parameters are reachable as ``<branch>__<param>``.

    Attributes
    ----------
    transformers_ : list of (str, fitted transformer)
        The fitted branches (clones of ``transformers``).
    feature_names_out_ : ndarray of str
        Output names, branch by branch.
    feature_slices_ : dict
        ``{branch name: slice}`` of each branch's columns in the output.

    Raises
    ------
    radhe.errors.InputError
        A branch returned a different number of rows, or a DataFrame whose index differs from X's;
        in fit, the branches produced no feature at all (the message names the columns the table
        branches left out and why).
    radhe.errors.ConfigurationError
        Duplicated branch names or output names (the message says which branch repeats a column
        itself, and which columns several branches produce).
    """

    def __init__(self, transformers):
        self.transformers = transformers

    # -- parameters (nested, like Pipeline / FeatureUnion) ---------------------------------
    def get_params(self, deep=True):
        return get_composite_params(self, "transformers", deep=deep)

    def set_params(self, **params):
        set_composite_params(self, "transformers", **params)
        return self

    def _branches(self):
        if isinstance(self.transformers, (str, bytes)):
            raise ConfigurationError(f"FeatureFusion: transformers must be a list of (name, transformer) pairs, "
                                     f"got {self.transformers!r}")
        branches = list(self.transformers or [])
        for branch in branches:
            if not (isinstance(branch, tuple | list) and len(branch) == 2 and isinstance(branch[0], str)):
                raise ConfigurationError(f"FeatureFusion: each branch must be a (name, transformer) pair, got "
                                         f"{branch!r}")
            step = branch[1]
            if not (step is None or (isinstance(step, str) and step == "drop")
                    or (hasattr(step, "fit") and hasattr(step, "transform"))):
                raise ConfigurationError(f"FeatureFusion: branch {branch[0]!r} must be a transformer (with fit and "
                                         f"transform), 'drop' or None, got {step!r}")
        names = [name for name, _ in branches]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"FeatureFusion: branch names must be unique, got {names}")
        for name, _ in branches:
            if "__" in name:
                raise ConfigurationError(f"FeatureFusion: branch name {name!r} must not contain '__'")
        active = [(n, t) for n, t in branches if t is not None and not (isinstance(t, str) and t == "drop")]
        if not active:
            raise ConfigurationError("FeatureFusion needs at least one branch that is not 'drop'")
        return active

    # -- fit / transform -------------------------------------------------------------------
    def fit(self, X, y=None, **fit_params):
        """Fit every branch on the whole of ``X``; see :meth:`fit_transform`."""
        self.fit_transform(X, y, **fit_params)
        return self

    def fit_transform(self, X, y=None, **fit_params):
        """Fit every branch and return the concatenated features.

        Parameters
        ----------
        X : pandas.DataFrame
            The case manifest.
        y : array-like, optional
            Passed to every branch's ``fit``.

        Returns
        -------
        pandas.DataFrame
            Same index as X; columns ``<family>__<name>``.
        """
        branches = self._branches()
        fitted, outputs = [None] * len(branches), [None] * len(branches)
        for i in _table_branches_first(branches):
            name, transformer = branches[i]
            branch = clone(transformer)
            if hasattr(branch, "fit_transform"):
                out = branch.fit_transform(X, y, **fit_params)
            else:
                out = branch.fit(X, y, **fit_params).transform(X)
            fitted[i] = (name, branch)
            outputs[i] = self._as_frame(name, branch, out, X)
        self.transformers_ = fitted
        result = self._concat(outputs, X, [name for name, _ in fitted])
        if result.shape[1] == 0:
            raise InputError(_no_features(fitted, X))
        self.feature_names_out_ = np.asarray(result.columns, dtype=object)
        sizes = [frame.shape[1] for frame in outputs]
        ends = np.cumsum(sizes)
        self.feature_slices_ = {
            name: slice(int(end - size), int(end)) for (name, _), size, end in zip(fitted, sizes, ends, strict=True)
        }
        if hasattr(X, "shape"):
            self.n_features_in_ = X.shape[1]
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return result

    def transform(self, X):
        """Transform ``X`` with every fitted branch; a DataFrame with X's index."""
        check_is_fitted(self, "transformers_")
        outputs = [None] * len(self.transformers_)
        for i in _table_branches_first(self.transformers_):
            name, branch = self.transformers_[i]
            outputs[i] = self._as_frame(name, branch, branch.transform(X), X)
        result = self._concat(outputs, X, [name for name, _ in self.transformers_])
        if list(result.columns) != list(self.feature_names_out_):
            raise InputError(
                "FeatureFusion: the branches returned different columns in transform than in fit "
                f"({result.shape[1]} vs {len(self.feature_names_out_)} columns)"
            )
        return result

    def get_feature_names_out(self, input_features=None):
        """Names of the fused features, ``<family>__<name>``."""
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()

    def set_output(self, *, transform=None):
        """Forward ``set_output`` to the branches; the fusion itself always returns a DataFrame."""
        for _, transformer in list(self.transformers or []):
            if hasattr(transformer, "set_output") and not isinstance(transformer, str):
                transformer.set_output(transform=transform)
        return self

    def __sklearn_tags__(self):
        from radhe.features.tabular import mixed_table_tags

        # what the input may hold is up to the branches
        return mixed_table_tags(super().__sklearn_tags__())

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _as_frame(name, branch, out, X) -> pd.DataFrame:
        n_rows = _n_rows(X)
        if getattr(out, "shape", None) is None or len(out.shape) != 2:
            raise InputError(f"FeatureFusion: branch '{name}' returned {type(out).__name__}, not a 2-D table")
        if out.shape[0] != n_rows:
            raise InputError(
                f"FeatureFusion: branch '{name}' returned {out.shape[0]} rows for {n_rows} input rows; "
                "every branch must return one row per case, in order"
            )
        if isinstance(out, pd.DataFrame):
            if isinstance(X, pd.DataFrame) and not out.index.equals(X.index):
                raise InputError(
                    f"FeatureFusion: branch '{name}' returned rows whose index differs from the input's "
                    "(reordered or re-indexed rows); every branch must keep X's index"
                )
            frame = out.copy()
        else:
            if hasattr(out, "toarray"):
                out = out.toarray()
            try:
                columns = list(branch.get_feature_names_out())
            except (AttributeError, TypeError, ValueError):
                columns = [f"{i}" for i in range(out.shape[1])]
            index = X.index if isinstance(X, pd.DataFrame) else None
            frame = pd.DataFrame(np.asarray(out), index=index, columns=columns)
        frame.columns = [c if "__" in str(c) else f"{name}__{c}" for c in map(str, frame.columns)]
        return frame

    @staticmethod
    def _concat(outputs, X, names) -> pd.DataFrame:
        index = X.index if isinstance(X, pd.DataFrame) else outputs[0].index
        aligned = [frame.set_axis(index, axis=0) for frame in outputs]
        result = pd.concat(aligned, axis=1) if len(aligned) > 1 else aligned[0]
        if result.columns.duplicated().any():
            raise ConfigurationError(_duplicate_columns(names, outputs))
        return result


def _duplicate_columns(names, outputs) -> str:
    """The message of a fusion whose output repeats column names: those a branch repeats itself, and
    those several branches produce."""
    parts, hints = [], []
    for name, frame in zip(names, outputs, strict=True):
        repeated = frame.columns[frame.columns.duplicated()].unique().tolist()
        if repeated:
            parts.append(f"branch '{name}' produces the column(s) {repeated[:10]} more than once")
    if parts:
        hints.append("a branch must name each of its columns once (rename the input columns whose features "
                     "get the same name, or fix the branch's feature names)")
    branches_of: dict = {}
    for name, frame in zip(names, outputs, strict=True):
        for column in dict.fromkeys(frame.columns):
            branches_of.setdefault(column, []).append(name)
    shared = {column: found for column, found in branches_of.items() if len(found) > 1}
    if shared:
        listing = "; ".join(f"'{column}' by branches {found}" for column, found in list(shared.items())[:10])
        parts.append(f"several branches produce the same column(s): {listing}")
        hints.append("give each branch its own columns (e.g. exclude a branch's columns from ClinicalFeatures)")
    return f"FeatureFusion: {'; '.join(parts)}; {'; '.join(hints)}"
