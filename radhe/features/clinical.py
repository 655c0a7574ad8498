"""Clinical variables of the manifest as model features (family ``clinical``)."""

from __future__ import annotations

from radhe.features.tabular import OUTCOME_COLUMNS, _TableTransformer

__all__ = ["ClinicalFeatures", "OUTCOME_COLUMNS"]

class ClinicalFeatures(_TableTransformer):
    """Impute and encode the manifest's clinical variables; names ``clinical__<column>``.

    * numeric columns (including 0/1 flags such as ``anticoagulant``): missing and infinite values
      replaced by the training median; with ``missing_indicator=True`` a ``<column>_missing`` 0/1
      column is added for every column that had missing values in the training data (missingness
      is often informative, e.g. an INR measured only in anticoagulated patients);
    * text / categorical columns (``sex``, ``location``): missing values take the most frequent
      training category, then one-hot encoding (a single 0/1 column for a two-level variable such as
      ``sex``). Text is read without surrounding whitespace (``"M "`` is ``"M"``) and otherwise as
      written (``"m"`` is not ``"M"``); numbers are compared as values, so a code column fitted on
      the integers 1, 2, 3 matches 1.0, 2.0 at prediction (a column read as float because one cell
      is blank), and its features keep the names ``clinical__<column>_1`` ...
    * a category not seen in training (``"male"`` where fit saw ``"F"`` and ``"M"``) is refused in
      :meth:`transform` by default: an :class:`~radhe.errors.InputError` names the column, the
      unseen values, their cases and the categories seen in fit (encoding it as zeros would read
      it as the first category of a two-level variable). With ``handle_unknown="ignore"`` it gets
      zeros in every column of the variable and an :class:`~radhe.errors.InputWarning` names it.
      Inside a cross-validation, a category present only in a held-out fold is such a category:
      merge rare categories, or pass ``handle_unknown="ignore"``.

    Missing values are NaN, None and the text :func:`pandas.read_csv` reads as missing ("NA",
    "NaN", "n/a", "" ...), so a manifest gives the same features from a file and from a DataFrame.
    A column of numbers with text among them ("unknown", "150 mmHg", "1,2") is refused with an
    :class:`~radhe.errors.InputError` naming the column, the values and the cases — in ``fit``
    and, for new cases, in ``transform`` — rather than one-hot encoded (every blood pressure its
    own category). Pass ``categorical=[column]`` if its values really are categories.

    Everything is learnt in :meth:`fit`, so inside a cross-validation fold nothing leaks from the
    test rows.

    Parameters
    ----------
    columns : "auto" or list of str, default "auto"
        The columns to use. "auto" takes every column of the manifest except

        - the reserved columns ``case_id``, ``patient_id``, ``image``, ``mask`` (and a segmenter's
          ``mask_pred``),
        - the outcome columns :data:`OUTCOME_COLUMNS` = ``("followup_volume_ml", "he")``,
        - text columns of file paths: every value ends in a suffix radhe reads (``.nii``,
          ``.nii.gz``, ``.nrrd``, ``.mha``, ``.dcm``, ...) or in ``/``, or is absolute or starts with
          ``./``, ``../``, ``~`` (relative paths such as ``dicom/c01`` may sit among these);
          ``"160/90"`` and ``"DOAC/apixaban"`` are not paths,
        - identifiers by name (``id``, ``*_id``, ``studyID``, ``mrn``, ``accession``),
        - free text and identifiers by their values, judged against the number of cases: text
          columns with more than two distinct values of which more than half occur only once
          (40 distinct notes in 40 cases), or with more than ``max_categories`` distinct values,
        - date/time columns (datetime dtype, or text such as ``2021-03-04 14:30``),
        - columns without any value,
        - the columns in ``exclude``.

        Every column left out for what it holds (file paths included) is named in a warning and in
        ``dropped_columns_``. A column used whose values determine ``y`` in :meth:`fit` (a copy of the
        outcome, a recoding such as "yes"/"no", an inverted 0/1) is named in a warning. Input columns
        whose features would get the same name (a numeric ``sex_M`` next to ``sex`` of categories F
        and M) are refused with an :class:`~radhe.errors.InputError`.

        Outcome columns are refused even when listed explicitly
        (:class:`~radhe.errors.ConfigurationError`): they are not known at admission.
    exclude : sequence of str, default ("site",)
        Further columns not used with ``columns="auto"``. ``site`` is excluded by default: a model
        that learns each hospital's base rate does not transfer to a new hospital. Pass
        ``exclude=()`` to use it.
    categorical : sequence of str, optional
        Columns to one-hot encode even though they hold numbers (e.g. a numeric location code).
    missing_indicator : bool, default True
        Add ``<column>_missing`` indicators for numeric columns with missing training values.
    max_categories : int, default 50
        See ``columns``. Neither this limit nor the free-text rule applies to columns listed in
        ``columns`` or ``categorical``.
    handle_unknown : {"error", "ignore"}, default "error"
        What :meth:`transform` does with a category of a categorical column not seen in :meth:`fit`
        (as in scikit-learn's ``OneHotEncoder``). ``"error"``: raise an
        :class:`~radhe.errors.InputError` naming the column, the unseen categories with their cases
        and the categories seen in fit. ``"ignore"``: encode it as zeros in every one-hot column of
        the variable (for a two-level variable that is the first category, e.g. ``"F"`` of
        ``sex``) and warn (:class:`~radhe.errors.InputWarning`) naming the column, categories and
        cases. Missing values are not unseen categories: they take the training mode.

    Attributes
    ----------
    columns_ : list of str
        Input columns used (numeric first, then categorical).
    numeric_columns_, categorical_columns_ : list of str
    medians_ : dict
        Imputation value of each numeric column.
    categories_ : dict
        Sorted training categories of each categorical column, as text (numbers as values: the
        integers 1, 2 and the floats 1.0, 2.0 are both ``["1", "2"]``).
    modes_ : dict
        Imputation category of each categorical column.
    dropped_columns_ : dict
        Columns considered but not used, with the reason.
    missing_fraction_ : dict
        Share of the training rows without a value, per column used (judges whether a column empty
        for a whole batch in ``transform`` is worth a warning).
    feature_names_out_ : ndarray of str

    Examples
    --------
    >>> import pandas as pd
    >>> manifest = pd.DataFrame({
    ...     "case_id": ["a", "b", "c"], "image": ["/x/a.nii", "/x/b.nii", "/x/c.nii"],
    ...     "age_years": [70.0, None, 60.0], "sex": ["F", "M", "M"], "he": [0, 1, 0]})
    >>> ClinicalFeatures().fit_transform(manifest).columns.tolist()
    ['clinical__age_years', 'clinical__age_years_missing', 'clinical__sex_M']
    """

    _family = "clinical"
    _impute_numeric = True

    _parameter_constraints = {**_TableTransformer._parameter_constraints, "missing_indicator": ["boolean"]}

    def __init__(
        self,
        columns="auto",
        *,
        exclude=("site",),
        categorical=None,
        missing_indicator=True,
        max_categories=50,
        handle_unknown="error",
    ):
        self.columns = columns
        self.exclude = exclude
        self.categorical = categorical
        self.missing_indicator = missing_indicator
        self.max_categories = max_categories
        self.handle_unknown = handle_unknown
