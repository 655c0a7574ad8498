"""What radhe's deep-learning estimators share: one documented, validated parameter set and the torch plumbing.

The segmenter, the CNN embedder, the NCCT marker classifier and the two-output network take the same
ROI, network, training and run-time parameters. They are defined once here:

* the parameter groups (:class:`RoiParameters`, :class:`RoiCNNParameters`, :class:`UNetParameters`,
  :class:`ImageParameters`, :class:`TrainingParameters`, :class:`RuntimeParameters`) declare them as
  dataclass fields with their common defaults; an estimator is a dataclass inheriting the groups it
  takes (:func:`torch_estimator`), so its ``__init__`` — plain keyword parameters stored unchanged,
  as scikit-learn's ``get_params`` / ``clone`` / grid search expect — is generated, and an estimator
  with another default re-declares just that field;
* their meaning, unit and check are in :data:`SHARED_PARAMETERS`; a docstring line
  ``[shared: name, name, ...]`` expands into numpydoc entries with the estimator's own defaults, and
  :meth:`TorchEstimatorMixin._check_shared_parameters` validates them with precise
  :class:`~radhe.errors.ConfigurationError` s (a ``ValueError``).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from radhe._compat import HasMethods, Interval, StrOptions, validate_params
from radhe.errors import ConfigurationError, format_case, warn_cases
from radhe.nn import runtime
from radhe.nn import slices as S
from radhe.nn.training import train_network

__all__ = ["SHARED_PARAMETERS", "SharedParameter", "TorchEstimatorMixin", "shared_parameters", "torch_estimator",
           "RoiParameters", "RoiCNNParameters", "UNetParameters", "ImageParameters", "TrainingParameters",
           "RuntimeParameters", "UNetEstimator", "RoiCNNEstimator", "parameter_names"]


@dataclass(frozen=True)
class SharedParameter:
    """One parameter shared by the deep-learning estimators: its numpydoc type, meaning and check."""

    type: str
    doc: str
    check: Callable[[Any], str | None] | None = None  # returns what is wrong, or None
    #: scikit-learn ``_parameter_constraints`` entry (``sklearn.utils._param_validation`` form)
    constraints: list = field(default_factory=lambda: [object])


def _int_at_least(low: int):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            return f"an integer >= {low}"
        return None

    return check


def _positive_number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value > 0:
        return "a number > 0"
    return None


def _non_negative_number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value >= 0:
        return "a number >= 0"
    return None


def _optional(check):
    def optional(value):
        return None if value is None else check(value)

    return optional


def _choice(*options):
    def check(value):
        return None if value in options else "one of " + ", ".join(repr(o) for o in options)

    return check


def _boolean(value):
    return None if isinstance(value, (bool, np.bool_)) else "True or False"


def _window(value):
    try:
        low, high = value
        ordered = bool(high > low)
    except (TypeError, ValueError):
        return "(low, high) in HU with high > low"
    return None if ordered else "(low, high) in HU with high > low"


#: The ROI, network and training parameters of the deep-learning estimators, defined once.
SHARED_PARAMETERS: dict[str, SharedParameter] = {
    # ---- the haematoma ROI (CNN embedder, marker classifier)
    "crop_size": SharedParameter("int", "ROI crops are resampled to ``crop_size`` × ``crop_size`` pixels "
                                 "(299 for Inception-v3).", _int_at_least(8)),
    "roi_mm": SharedParameter("float", "Side of the square ROI in mm, centred on the haematoma of the "
                              "largest-area slice; enlarged to cover a larger haematoma. A fixed physical size "
                              "keeps haematoma size visible to the CNN.", _positive_number),
    "n_slices": SharedParameter("int", "Slices on each side of the largest-area (or largest predicted-area) "
                                "slice that are used too.", _int_at_least(0)),
    "mask_channel": SharedParameter("bool", "Give the CNN the haematoma mask as a second input channel.", _boolean),
    "window": SharedParameter("(float, float)", "HU window mapped to [0, 1]; 0–80 or 0–100 HU suit blood "
                              "against brain.", _window),
    # ---- the networks
    "base_channels": SharedParameter("int", "Channels of the first convolution block (doubled per block / "
                                     "resolution level).", _int_at_least(1)),
    "depth": SharedParameter("int", "Convolution blocks of the ROI CNN, each followed by 2× pooling.",
                             _int_at_least(1)),
    "levels": SharedParameter("int", "U-Net resolution levels (``levels - 1`` poolings).", _int_at_least(2)),
    "dilation": SharedParameter("int", "Dilation of the second convolution in each U-Net encoder block "
                                "(Teng et al. 2021); 1 disables it.", _int_at_least(1)),
    "n_features": SharedParameter("int", "Width of the ROI CNN's embedding layer.", _int_at_least(1)),
    "pooling": SharedParameter("{\"max\", \"haar\"}", "ROI CNN downsampling: max pooling or Haar-wavelet "
                               "pooling (Ohkita's wavelet CNN, which keeps texture).", _choice("max", "haar")),
    "dropout": SharedParameter("float", "Dropout before the output layer.",
                               lambda v: None if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1
                               else "a number in [0, 1)"),
    # ---- training
    "epochs": SharedParameter("int", "Maximum training epochs.", _int_at_least(1)),
    "batch_size": SharedParameter("int", "Training samples (slices or crops) per optimisation step.",
                                  _int_at_least(2)),
    "learning_rate": SharedParameter("float", "AdamW learning rate.", _positive_number),
    "weight_decay": SharedParameter("float", "AdamW weight decay.", _non_negative_number),
    "augment": SharedParameter("bool", "Random flips, rotations (±10°), scalings (±10 %) and intensity jitter "
                               "of the training samples.", _boolean),
    "image_column": SharedParameter("str", "Manifest column of the CT (HU)."),
    "mask_column": SharedParameter("str", "Manifest column of the haematoma mask."),
    "hu_check": SharedParameter("bool", "Refuse a CT whose intensities do not look like Hounsfield units (a raw, "
                                "windowed or normalised export; see :func:`radhe.io.load_checked_case`). False "
                                "for images deliberately not in HU.", _boolean),
    # ---- run time
    "device": SharedParameter("str", "\"auto\": CUDA when available, else CPU; or a torch device name. No "
                              "weights are ever downloaded."),
    "n_threads": SharedParameter("int or None", "Torch CPU threads while fitting/predicting (restored "
                                 "afterwards); None: the CPUs available to the process.",
                                 _optional(_int_at_least(1))),
    "random_state": SharedParameter("int or None", "Seed of weight initialisation, sampling and augmentation; "
                                    "None means 0, so repeated fits give the same result."),
    "verbose": SharedParameter("bool", "Print one line per training epoch."),
}

_INT = Integral
_CONSTRAINTS = {
    "crop_size": [Interval(_INT, 8, None, closed="left")],
    "roi_mm": [Interval(Real, 0, None, closed="neither")],
    "n_slices": [Interval(_INT, 0, None, closed="left")],
    "mask_channel": ["boolean"],
    "window": [tuple, list],
    "base_channels": [Interval(_INT, 1, None, closed="left")],
    "depth": [Interval(_INT, 1, None, closed="left")],
    "levels": [Interval(_INT, 2, None, closed="left")],
    "dilation": [Interval(_INT, 1, None, closed="left")],
    "n_features": [Interval(_INT, 1, None, closed="left")],
    "pooling": [StrOptions({"max", "haar"})],
    "dropout": [Interval(Real, 0, 1, closed="left")],
    "epochs": [Interval(_INT, 1, None, closed="left")],
    "batch_size": [Interval(_INT, 2, None, closed="left")],
    "learning_rate": [Interval(Real, 0, None, closed="neither")],
    "weight_decay": [Interval(Real, 0, None, closed="left")],
    "augment": ["boolean"],
    "image_column": [str],
    "mask_column": [str],
    "hu_check": ["boolean"],
    "device": [str, HasMethods(["type"])],
    "n_threads": [Interval(_INT, 1, None, closed="left"), None],
    "random_state": ["random_state"],
    "verbose": ["boolean"],
}
for _name, _constraints in _CONSTRAINTS.items():
    SHARED_PARAMETERS[_name] = dataclasses.replace(SHARED_PARAMETERS[_name], constraints=_constraints)
assert set(_CONSTRAINTS) == set(SHARED_PARAMETERS), "every shared parameter has its constraints"


_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)\[shared: (?P<names>[a-z_, ]+)\][ \t]*$", re.MULTILINE)


def shared_parameters(cls):
    """Class decorator: expand ``[shared: a, b]`` lines of the docstring into numpydoc entries.

    Each entry reads ``name : type, default <the class's default>`` followed by the shared description.
    """
    defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()}

    def expand(match):
        indent = match["indent"]
        entries = []
        for name in (n.strip() for n in match["names"].split(",")):
            if name not in SHARED_PARAMETERS:
                raise KeyError(f"{cls.__name__}: '{name}' is not a shared parameter")
            if name not in defaults:
                raise KeyError(f"{cls.__name__}: documents shared parameter '{name}' it does not take")
            spec = SHARED_PARAMETERS[name]
            body = textwrap.fill(spec.doc, width=96, initial_indent=indent + "    ",
                                 subsequent_indent=indent + "    ")
            default = defaults[name]
            shown = f'"{default}"' if isinstance(default, str) else repr(default)
            entries.append(f"{indent}{name} : {spec.type}, default {shown}\n{body}")
        return "\n".join(entries)

    cls.__doc__ = _PLACEHOLDER.sub(expand, cls.__doc__ or "")
    return cls


def torch_estimator(cls):
    """Class decorator of a deep-learning estimator: a keyword-only dataclass (no generated repr / eq:
    scikit-learn's are kept) whose ``[shared: ...]`` docstring lines are expanded.

    Its ``_parameter_constraints`` (scikit-learn's declarative validation) are those of the shared
    parameters it takes plus the class's own ``_own_parameter_constraints``; every parameter must
    have one.
    """
    cls = shared_parameters(dataclass(kw_only=True, repr=False, eq=False)(cls))
    names = [f.name for f in dataclasses.fields(cls)]
    own = dict(cls.__dict__.get("_own_parameter_constraints", {}))
    cls._parameter_constraints = {name: own.get(name, SHARED_PARAMETERS[name].constraints if name in
                                                SHARED_PARAMETERS else None) for name in names}
    missing = [name for name, constraint in cls._parameter_constraints.items() if constraint is None]
    if missing:
        raise TypeError(f"{cls.__name__}: no parameter constraints for {missing}")
    return cls


_parameter_group = dataclass(kw_only=True, repr=False, eq=False)


@_parameter_group
class RoiParameters:
    """The square haematoma ROI read by the ROI CNNs (see :data:`SHARED_PARAMETERS`)."""

    crop_size: int = 64
    roi_mm: float = 80.0
    n_slices: int = 3
    mask_channel: bool = True


@_parameter_group
class RoiCNNParameters:
    """The ROI CNN (:class:`radhe.nn.networks.RoiCNN`)."""

    base_channels: int = 8
    depth: int = 3
    n_features: int = 32
    pooling: str = "max"


@_parameter_group
class UNetParameters:
    """The U-Net (:class:`radhe.nn.networks.UNet2d`)."""

    base_channels: int = 16
    levels: int = 4
    dilation: int = 2


@_parameter_group
class ImageParameters:
    """Where the CT and mask are in the manifest, and the HU window the network sees."""

    window: tuple[float, float] = (0.0, 80.0)
    image_column: str = "image"
    mask_column: str = "mask"
    hu_check: bool = True


@_parameter_group
class TrainingParameters:
    """The optimisation (:func:`radhe.nn.training.train_network`)."""

    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    augment: bool = True


@_parameter_group
class RuntimeParameters:
    """Device, CPU threads, seed and progress output."""

    device: str = "auto"
    n_threads: int | None = None
    random_state: object = None
    verbose: bool = False


def parameter_names(group) -> list[str]:
    """The parameters a group declares."""
    return [f.name for f in dataclasses.fields(group)]


class TorchEstimatorMixin:
    """Plumbing of an estimator that trains a torch network: checks, threads, the cached eval-mode network.

    The estimator defines ``_build_network()`` (a fresh, untrained module) and stores the trained
    weights in ``model_state_``; :meth:`_network` rebuilds the module once per fitted estimator and
    device, and the module is left out of pickles (it is rebuilt from ``model_state_``).
    """

    def _check_shared_parameters(self) -> None:
        """Check every parameter: ``_parameter_constraints``, then what they cannot say (window order)."""
        validate_params(self)
        self._check_shared_values()

    def _check_shared_values(self) -> None:
        own = getattr(type(self), "_own_parameter_constraints", {})
        params = self.get_params(deep=False)
        for name, spec in SHARED_PARAMETERS.items():
            # an estimator that declares its own constraints for a shared name (the segmenter's epochs
            # may be 0) is checked by those
            if spec.check is None or name not in params or name in own:
                continue
            value = getattr(self, name)
            problem = spec.check(value)
            if problem:
                raise ConfigurationError(f"{type(self).__name__}: {name} must be {problem}, got {value!r}")

    def _threads(self) -> int:
        return self.n_threads if self.n_threads is not None else runtime.default_threads()

    def _device(self):
        return runtime.resolve_device(self.device)

    def _network(self):
        """The fitted network in eval mode on the estimator's device (built once, not pickled)."""
        check_is_fitted(self, "model_state_")
        device = self._device()
        net = getattr(self, "_net", None)
        if net is None or getattr(self, "_net_device", None) != device:
            net = self._build_network()
            if self.model_state_ is not None:  # None: a frozen, user-supplied backbone
                net.load_state_dict(self.model_state_)
            net = self._prepare_for_inference(net.eval().to(device), device)
            self._net, self._net_device = net, device
        return net

    def _prepare_for_inference(self, net, device):
        return net

    def _train_network(self, net, epoch_batches, batch_loss, *, history_columns, **options):
        """Train ``net`` with :func:`~radhe.nn.training.train_network` and the estimator's training parameters.

        Sets ``model_state_`` (the kept weights) and ``history_`` (one row per epoch, ``history_columns``);
        ``options`` go to :func:`~radhe.nn.training.train_network` (schedule, validation, time budget).
        """
        result = train_network(net, epoch_batches=epoch_batches, batch_loss=batch_loss, epochs=self.epochs,
                               learning_rate=self.learning_rate, weight_decay=self.weight_decay,
                               name=type(self).__name__, verbose=self.verbose, **options)
        self.model_state_ = result.state
        self.history_ = pd.DataFrame(result.history).reindex(columns=history_columns)
        self._net = None
        return result

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # X is a manifest: a DataFrame of paths and clinical columns
        tags.input_tags.string = True
        return tags

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_net", None)
        state.pop("_net_device", None)
        return state


@_parameter_group
class UNetEstimator(RuntimeParameters, TrainingParameters, ImageParameters, UNetParameters, TorchEstimatorMixin):
    """Base of the estimators built on a U-Net over whole slices (the segmenter, the two-output network)."""


@_parameter_group
class RoiCNNEstimator(RuntimeParameters, TrainingParameters, ImageParameters, RoiCNNParameters, RoiParameters,
                      TorchEstimatorMixin):
    """Base of the estimators reading haematoma ROI crops with a ROI CNN (CNN embedder, marker classifier).

    A case without a usable ROI (no mask path, an empty mask) gets NaN outputs, a warning naming it, and
    a row in ``failures_``.
    """

    #: what a case without a usable ROI gets, as said in its warning
    _nan_outputs = "outputs"

    def _roi_cnn(self, **overrides):
        """A fresh ROI CNN (:class:`radhe.nn.networks.RoiCNN`) built from the estimator's parameters."""
        from radhe.nn.networks import RoiCNN

        settings = dict(in_channels=2 if self.mask_channel else 1, base_channels=self.base_channels, depth=self.depth,
                        n_features=self.n_features, pooling=self.pooling)
        return RoiCNN(**{**settings, **overrides})

    def _load_roi_case(self, row: dict, mask_column: str):
        """``(case, None)``, or ``(None, problem)`` for a case without a usable ROI."""
        mask_path = row[mask_column]
        if S.is_missing(mask_path):
            return None, f"no '{mask_column}' path"
        case = S.load_case(row[self.image_column], mask_path, case_id=row["case_id"], hu_check=self.hu_check)
        if not case.mask.any():
            return None, f"empty mask '{mask_path}'"
        return case, None

    def _record_failure(self, case_id, problem: str) -> dict:
        return {"case_id": str(case_id), "problem": problem}

    def _warn_failures(self, failures: list) -> None:
        """One warning naming every case of this call without a usable ROI (not one per case)."""
        if failures:
            their = "its" if len(failures) == 1 else "their"
            warn_cases(f"{type(self).__name__}: {len(failures)} case(s) without a usable ROI; {their} "
                       f"{self._nan_outputs} are NaN", [f"{format_case(f['case_id'])}: {f['problem']}"
                                                        for f in failures], stacklevel=4)

    def _roi_crops(self, X: pd.DataFrame, mask_column: str, *, record: bool = False) -> list:
        """Per case an ``(n, c, crop_size, crop_size)`` float32 array of ROI crops, or None.

        Cases without a usable ROI are named in one warning; ``record=True`` (fit only: transform and
        predict never change fitted state) also keeps them in ``failures_``.
        """
        crops, failures = [], []
        for row in X.to_dict("records"):
            case, problem = self._load_roi_case(row, mask_column)
            if case is None:
                crops.append(None)
                failures.append(self._record_failure(row["case_id"], problem))
                continue
            crops.append(S.roi_crops(case, window_hu=tuple(self.window), n_slices=self.n_slices, roi_mm=self.roi_mm,
                                     size=self.crop_size, mask_channel=self.mask_channel))
        if record:
            self.failures_ = pd.DataFrame(failures, columns=["case_id", "problem"])
        self._warn_failures(failures)
        return crops

    def get_feature_names_out(self, input_features=None):
        """The names of ``transform``'s columns (``cnn__<i>`` / ``marker__<label>``)."""
        check_is_fitted(self, "feature_names_out_")
        return np.asarray(self.feature_names_out_, dtype=object)
