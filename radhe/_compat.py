"""The one place where radhe touches scikit-learn's private internals.

radhe uses scikit-learn's and imbalanced-learn's public API everywhere else. A handful of things
an estimator library needs have no public equivalent yet; they are imported (or called) here, and
only here, so that

* a scikit-learn release that moves or renames them breaks one module, not many, and the fix
  (or a version switch) goes in one place;
* ``grep -rn "sklearn.*\\._" radhe`` finding anything outside this file is a bug (a test checks it).

Each entry says why no public API exists. The supported versions are the floors of
``pyproject.toml`` (scikit-learn >= 1.6) up to the newest release; ``make test-floor`` runs the
tests at the floor.
"""

from __future__ import annotations

# Declarative parameter validation (``_parameter_constraints``): the constraint objects, the
# validator and its error live in the private module ``sklearn.utils._param_validation``;
# scikit-learn has not made them public (they are documented for contributors only). All of them
# exist unchanged from scikit-learn 1.2 on, so the 1.6 floor has them. ``RealNotInt`` is the type
# of a real parameter that must not be an int (an int there means a count); ``Options`` a set of
# allowed non-string values; ``InvalidParameterError`` (a ValueError and a TypeError) is what
# the validator raises and what ``check_param_validation`` expects.
from sklearn.utils._param_validation import (  # noqa: F401
    HasMethods,
    Interval,
    InvalidParameterError,
    Options,
    RealNotInt,
    StrOptions,
)

# The validator itself, for objects that are not estimators (the cross-validation splitters of
# radhe.model_selection, which validate in ``__init__`` as scikit-learn's splitters do).
from sklearn.utils._param_validation import validate_parameter_constraints as _validate_parameter_constraints

# Nested ``get_params`` / ``set_params`` over a list of ``(name, estimator)`` (``<name>__<param>``),
# as Pipeline, FeatureUnion and ColumnTransformer have. scikit-learn keeps this mixin private and
# has no public base class for "an estimator made of named sub-estimators" (FeatureFusion is one;
# copying the mixin would be a hand-written duplicate of it).
from sklearn.utils.metaestimators import _BaseComposition as BaseComposition  # noqa: F401

# The output feature names of a transformer from ``input_features`` / ``feature_names_in_`` /
# ``n_features_in_`` with scikit-learn's checks and messages. Public transformers get this through
# ``SelectorMixin`` / ``OneToOneFeatureMixin`` / ``ClassNamePrefixFeaturesOutMixin``, none of
# which fits a step that both imputes and selects (FeatureCleaner); the helper itself is private.
from sklearn.utils.validation import _check_feature_names_in as check_feature_names_in  # noqa: F401

from radhe.errors import ConfigurationError

__all__ = ["BaseComposition", "HasMethods", "Interval", "InvalidParameterError", "Options", "ParameterError",
           "RealNotInt", "StrOptions", "check_feature_names_in", "get_composite_params", "set_composite_params",
           "validate_param_values", "validate_params"]


class ParameterError(ConfigurationError, InvalidParameterError):
    """A parameter value outside its ``_parameter_constraints``.

    Both a :class:`radhe.errors.ConfigurationError` (radhe's error for bad settings) and
    scikit-learn's ``InvalidParameterError`` (so ``check_param_validation`` and code catching
    scikit-learn's error see what they expect); the message is scikit-learn's, naming the
    estimator, the parameter, what it must be and the value given, e.g. ``The 'C' parameter of
    CalibratedSVC must be a float in the range (0.0, inf). Got -1.0 instead.``
    """


def get_composite_params(estimator, attribute: str, deep: bool = True) -> dict:
    """``get_params`` of an estimator made of the named sub-estimators in ``attribute`` (``<name>__<param>``).

    :class:`BaseComposition`'s ``_get_params`` is how Pipeline, FeatureUnion and ColumnTransformer
    implement it; the method is private like the class.
    """
    return estimator._get_params(attribute, deep=deep)


def set_composite_params(estimator, attribute: str, **params) -> None:
    """``set_params`` counterpart of :func:`get_composite_params` (``BaseComposition._set_params``)."""
    estimator._set_params(attribute, **params)


def validate_params(estimator) -> None:
    """Check ``estimator``'s parameters against its ``_parameter_constraints``.

    ``BaseEstimator._validate_params`` is what scikit-learn's own estimators call at the start of
    ``fit``; it is private and has no public counterpart (``sklearn.utils.validation`` offers no
    parameter validator), so radhe calls it from here only.

    Raises
    ------
    ParameterError
        A value outside its constraints (a :class:`radhe.errors.ConfigurationError` and
        scikit-learn's ``InvalidParameterError``), with scikit-learn's message.
    """
    try:
        estimator._validate_params()
    except InvalidParameterError as error:
        raise ParameterError(str(error)) from None


def validate_param_values(constraints: dict, params: dict, owner: str) -> None:
    """Check ``params`` against ``constraints`` (``_parameter_constraints`` form) for a non-estimator.

    Parameters
    ----------
    constraints : dict
        ``{name: [constraint, ...]}`` as in ``_parameter_constraints``.
    params : dict
        ``{name: value}``; names without a constraint are not checked.
    owner : str
        The class named in the message (e.g. ``"PatientStratifiedKFold"``).

    Raises
    ------
    ParameterError
        As :func:`validate_params`.
    """
    try:
        _validate_parameter_constraints(constraints, params, caller_name=owner)
    except InvalidParameterError as error:
        raise ParameterError(str(error)) from None
