"""`HematomaSegmenter`: a small 2-D U-Net as a scikit-learn transformer.

``fit`` trains the network slice by slice on the manifest's ground-truth masks; ``transform``
writes a predicted mask per case and returns the manifest with a column of their paths, which the
feature steps of :func:`radhe.make_pipeline` then read. Inside a cross-validation the segmenter is
refit on each training fold, so training and held-out folds both get predicted masks from a network
that never saw the held-out cases.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import time
import warnings
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from radhe._checks import check_frame
from radhe._compat import Interval, StrOptions
from radhe.cache import file_fingerprint
from radhe.errors import ConfigurationError, InputError, InputWarning, format_case
from radhe.nn import runtime
from radhe.nn import slices as S
from radhe.nn.base import UNetEstimator, torch_estimator, warn_cases
from radhe.nn.training import minibatches, soft_dice_loss

__all__ = ["HematomaSegmenter", "default_cache_dir", "postprocess", "fallback_region"]


def default_cache_dir() -> Path:
    """Where predicted masks go when ``cache_dir=None``: ``<system temp dir>/radhe-masks``.

    The folder is not deleted by radhe (the paths returned by ``transform`` must stay valid);
    remove it when the predictions are no longer needed.
    """
    return Path(tempfile.gettempdir()) / "radhe-masks"


@torch_estimator
class HematomaSegmenter(UNetEstimator, TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Automatic haematoma segmentation with a small 2-D U-Net, as a pipeline step.

    Parameters
    ----------
    [shared: base_channels, levels, dilation]
    context : int, default 0
        Neighbouring slices on each side given as extra input channels (0: plain 2-D).
    [shared: window]
    skull_strip : bool, default False
        Zero everything outside the intracranial space (:func:`radhe.nn.slices.skull_strip`: bone
        threshold, skull ring closed over 3 mm and filled, largest component) before the network sees
        it.
    spacing_mm : float or None, default None
        In-plane pixel size (mm) the network works at: each case is cropped to its intracranial
        space (else its head) and resampled to it, and predictions are mapped back to the native grid.
        A model then meets a 512 × 512 scan (0.45 mm) and a 256 × 256 one (0.9 mm) at the same
        scale. Only slices holding intracranial space are run. None works on the native grid (or
        ``input_size``).
    input_size : int or None, default None
        Slices are resized to ``input_size`` × ``input_size`` (then predictions resized back);
        None keeps the native in-plane size (zero-padded to a multiple of ``2 ** (levels - 1)``).
        Not with ``spacing_mm``.
    brain_only : bool, default False
        Anatomical post-processing (:func:`radhe.nn.slices.brain_only`): a parenchymal haematoma lies
        inside the intracranial space, holds blood-like HU (−50 to 150), and is not a thin rim along
        the skull; predicted voxels and components that are not are removed before the other
        post-processing.
    weights : {"pretrained"} or None, default None
        "pretrained": start from the weights shipped with radhe (trained only on synthetic data; see
        :meth:`pretrained` and the model card), and fine-tune them on the cases of ``fit`` that have a
        mask (none, or ``epochs=0``: use them as they are). The network and image parameters must be
        those the weights were trained with (:meth:`pretrained` sets them). None trains from scratch.
    epochs : int, default 40
        Maximum training epochs (one epoch: every slice holding haematoma plus a sample of empty ones);
        0 only with ``weights="pretrained"`` (no fine-tuning).
    [shared: batch_size]
    learning_rate : float, default 2e-3
        AdamW learning rate, cosine-annealed to a tenth over ``epochs`` (5e-3 converges faster on
        easy data and in very short runs, but oscillates more).
    [shared: weight_decay]
    negative_ratio : float, default 1.5
        Empty (no haematoma) slices sampled per epoch, as a multiple of the haematoma slices.
    [shared: augment]
    validation_fraction : float, default 0.2
        Fraction of *patients* (``patient_id``, else ``case_id``) held out inside ``fit`` for early
        stopping on their Dice; 0 trains for all ``epochs``.
    patience : int, default 6
        Epochs without improvement of the validation Dice before training stops; the best epoch's
        weights are kept.
    max_fit_time : float or None, default None
        Stop training after this many seconds (the best weights so far are kept).
    threshold : float, default 0.5
        Probability threshold of the predicted mask, in (0, 1].
    min_component_ml : float, default 0.05
        Connected components smaller than this (mL) are removed from predictions.
    max_components : int or None, default None
        Keep only the largest ``max_components`` connected components (1: a single haematoma per
        scan, which removes scattered false positives); None keeps every component above
        ``min_component_ml``.
    fill_holes : bool, default True
        Fill holes in the predicted mask (per slice and in 3-D).
    on_empty : {"fallback", "warn", "raise"}, default "fallback"
        What to do when a case's prediction is empty after post-processing. "fallback": warn and
        write the most probable region instead (the connected component at the peak probability,
        thresholded halfway between the median and the peak), so downstream features are computed
        from *something* and the case is named (an empty mask, with the same warning, when every
        probability that anatomy allows is 0, or when that region is larger than
        :data:`FALLBACK_MAX_ML` or half the scan: no region stands out); "warn": warn and
        write the empty mask (downstream radiomics will then fail or skip it); "raise": raise
        :class:`~radhe.errors.InputError`.
        Every case's outcome is recorded beside its mask (:meth:`prediction_records`).
    [shared: image_column, mask_column, hu_check]
        (The ground-truth mask is used by ``fit`` only.)
    output_column : str, default "mask_pred"
        Column added by ``transform`` with the predicted masks' paths.
    cache_dir : str, path-like or None
        Folder of predicted masks; default :func:`default_cache_dir` (``<tmp>/radhe-masks``), which
        outlives the call. Files are ``<cache_dir>/<fingerprint>/<case_id>.nii``: the fingerprint
        hashes the fitted weights and post-processing settings, so different folds or models never
        overwrite each other's masks, and nothing is written beside the user's data.
    output_format : {"nii", "nii.gz", "nrrd"}, default "nii"
        Mask file format; uncompressed NIfTI reads fastest.
    [shared: device, n_threads]
    inference_precision : {"auto", "float32", "bfloat16"}, default "auto"
        "auto" uses bfloat16 autocast with channels-last memory on CPUs with native bfloat16
        support (about 3× faster than float32 there) and float32 otherwise.
    training_precision : {"auto", "float32", "bfloat16"}, default "auto"
        Autocast of the training forward pass (weights and optimiser stay float32): "auto" uses
        bfloat16 on CPUs with native bfloat16 support (2-3× faster steps there), else float32.
    inference_batch_size : int, default 8
        Slices per forward pass in ``transform``; the masks do not depend on it. On CPU, batches of
        4-8 slices at 1 mm are about 30 % faster than 32 (their activations stay in the cache).
    random_state : int or None, default None
        Seed of weight initialisation, slice sampling, augmentation and the validation split; None
        means 0, so repeated fits give the same weights and masks.
    [shared: verbose]

    Attributes
    ----------
    fine_tuned_ : bool
        Whether ``fit`` trained the network (False: the pretrained weights as shipped).
    weights_sha256_ : str or None
        SHA-256 of the shipped weight file the network started from (None: trained from scratch).
    model_state_ : dict
        The trained network's ``state_dict`` (CPU tensors); the estimator pickles with joblib and
        predicts on a machine without the training data.
    fingerprint_ : str
        Hash of the fitted weights and post-processing settings (names the mask folder).
    training_spacing_mm_ : dict
        ``{"in_plane": [(min, max), ...], "slice": [(min, max), ...]}``: the voxel sizes (mm) of the scans
        the network was trained on (the shipped weights' for ``pretrained()``; a fine-tuning that
        replaced them adds the interval of its cases). A scan outside every interval by more than
        15 % is predicted with an :class:`~radhe.errors.InputWarning` naming the case and its voxel size
        (``transform``: one warning listing the cases).
    network_parameters_ : dict
        The parameters the network was fitted with (:data:`NETWORK_PARAMETERS`: architecture,
        window, spacing, skull stripping). A prediction after ``set_params`` changed one refuses
        to run (:class:`~radhe.errors.ConfigurationError`): the weights would see inputs they were
        not trained on, or not fit the network.
    history_ : pandas.DataFrame
        Per epoch: ``train_loss``, ``val_dice`` (NaN without validation), ``seconds``.
    best_epoch_ : int
    train_cases_, validation_cases_ : list of str
    fit_time_ : float
        Seconds spent in ``fit``.

    Examples
    --------
    >>> seg = HematomaSegmenter(epochs=20, random_state=0).fit(train_manifest)   # doctest: +SKIP
    >>> test = seg.transform(test_manifest)                                      # doctest: +SKIP
    >>> test["mask_pred"].iloc[0]                                                # doctest: +SKIP
    '/tmp/radhe-masks/3f2a.../ich0031.nii'
    """

    _own_parameter_constraints = {
        "skull_strip": ["boolean"],
        "spacing_mm": [Interval(Real, 0, None, closed="neither"), None],
        "brain_only": ["boolean"],
        "weights": [StrOptions({"pretrained"}), None],
        "epochs": [Interval(Integral, 0, None, closed="left")],
        "input_size": [Interval(Integral, 8, None, closed="left"), None],
        "context": [Interval(Integral, 0, None, closed="left")],
        "negative_ratio": [Interval(Real, 0, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left"), None],
        "max_fit_time": [Interval(Real, 0, None, closed="neither"), None],
        "threshold": [Interval(Real, 0, 1, closed="right")],
        "min_component_ml": [Interval(Real, 0, None, closed="left")],
        "max_components": [Interval(Integral, 1, None, closed="left"), None],
        "fill_holes": ["boolean"],
        "on_empty": [StrOptions({"fallback", "warn", "raise"})],
        "output_column": [str],
        "cache_dir": [str, os.PathLike, None],
        "output_format": [StrOptions({"nii", "nii.gz", "nrrd"})],
        "inference_precision": [StrOptions({"auto", "float32", "bfloat16"})],
        "training_precision": [StrOptions({"auto", "float32", "bfloat16"})],
        "inference_batch_size": [Interval(Integral, 1, None, closed="left")],
    }

    context: int = 0
    skull_strip: bool = False
    spacing_mm: float | None = None
    input_size: int | None = None
    brain_only: bool = False
    weights: str | None = None
    epochs: int = 40
    batch_size: int = 16
    learning_rate: float = 2e-3
    negative_ratio: float = 1.5
    validation_fraction: float = 0.2
    patience: int = 6
    max_fit_time: float | None = None
    threshold: float = 0.5
    min_component_ml: float = 0.05
    max_components: int | None = None
    fill_holes: bool = True
    on_empty: str = "fallback"
    output_column: str = "mask_pred"
    cache_dir: object = None
    output_format: str = "nii"
    inference_precision: str = "auto"
    training_precision: str = "auto"
    inference_batch_size: int = 8

    # ------------------------------------------------------------------------------------ helpers
    def _check_params(self) -> None:
        self._check_shared_parameters()
        if self.on_empty not in ("fallback", "warn", "raise"):
            raise ConfigurationError(f"on_empty must be 'fallback', 'warn' or 'raise', got {self.on_empty!r}")
        if self.output_format not in ("nii", "nii.gz", "nrrd"):
            raise ConfigurationError(f"output_format must be 'nii', 'nii.gz' or 'nrrd', got {self.output_format!r}")
        for name in ("inference_precision", "training_precision"):
            if getattr(self, name) not in ("auto", "float32", "bfloat16"):
                raise ConfigurationError(
                    f"{name} must be 'auto', 'float32' or 'bfloat16', got {getattr(self, name)!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ConfigurationError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.context < 0:
            raise ConfigurationError(f"HematomaSegmenter: context must be >= 0, got {self.context!r}")
        if self.spacing_mm is not None and self.input_size is not None:
            raise ConfigurationError("HematomaSegmenter: set spacing_mm (a physical pixel size) or input_size (a "
                                     f"fixed slice size), not both; got spacing_mm={self.spacing_mm!r}, "
                                     f"input_size={self.input_size!r}")
        if self.epochs == 0 and self.weights is None:
            raise ConfigurationError("HematomaSegmenter: epochs=0 trains nothing; it needs weights='pretrained'")

    def _check_pretrained_parameters(self) -> None:
        """Refuse, naming them, parameters that differ from those the shipped weights were trained with."""
        expected = pretrained_parameters()
        told = self._differing(expected, PRETRAINED_FIXED, "trained with")
        if told:
            raise ConfigurationError(f"HematomaSegmenter: weights='pretrained' needs the parameters the weights "
                                     f"were trained with: {told}; HematomaSegmenter.pretrained() sets them")

    @property
    def _multiple(self) -> int:
        return 2 ** (self.levels - 1)

    def _build_network(self):
        from radhe.nn.networks import UNet2d

        return UNet2d(in_channels=2 * self.context + 1, base_channels=self.base_channels, levels=self.levels,
                      dilation=self.dilation)

    def _network(self):
        self._check_network_parameters()
        return super()._network()

    def _warn_spacing(self, case: S.Case) -> None:
        message = spacing_warning(case.spacing, getattr(self, "training_spacing_mm_", None))
        if message:
            warnings.warn(f"{format_case(case.case_id)}: {message} (file '{case.image_path}')", InputWarning,
                          stacklevel=3)

    def _differing(self, expected: dict, names, verb: str) -> str:
        """``"name=value (<verb> expected), ..."`` for the parameters among ``names`` whose value differs
        from ``expected``; "" when none does."""
        return ", ".join(f"{name}={getattr(self, name)!r} ({verb} {expected[name]!r})" for name in names
                         if _differs(getattr(self, name), expected[name]))

    def _check_network_parameters(self) -> None:
        """Refuse to predict with network parameters other than those of ``fit`` (a ``set_params`` since)."""
        fitted = getattr(self, "network_parameters_", None)
        if fitted is None:  # a model pickled before radhe recorded them
            return
        told = self._differing(fitted, fitted, "fitted with")
        if told:
            advice = ("set them back: the shipped weights fix them" if self.weights == "pretrained"
                      else "set them back, or fit again")
            raise ConfigurationError(
                f"HematomaSegmenter: the network was fitted with other settings than it now has: {told}; {advice}")

    def _prepare_for_inference(self, net, device):
        import torch

        from radhe.nn.networks import fold_batchnorm

        # the inference copy only (built from model_state_ by _network): training keeps its BatchNorm
        net = fold_batchnorm(net)
        if runtime.use_bfloat16(device, self.inference_precision):
            net = net.to(memory_format=torch.channels_last)
        return net

    def _geometry(self, case: S.Case):
        """``(intracranial, box)``: the intracranial space (None when no setting needs it) and the in-plane
        crop of ``spacing_mm`` (None without it)."""
        needed = self.skull_strip or self.brain_only or self.spacing_mm is not None
        intracranial = S.skull_strip(case.hu, spacing=case.spacing) if needed else None
        box = None if self.spacing_mm is None else S.head_box(case.hu, intracranial, case.spacing)
        return intracranial, box

    def _to_grid(self, volume: np.ndarray, case: S.Case, box, *, is_mask: bool = False):
        if self.spacing_mm is None:
            return S.to_network_grid(volume, self.input_size, self._multiple, is_mask=is_mask)
        return S.to_physical_grid(volume, case.spacing, float(self.spacing_mm), box, self._multiple, is_mask=is_mask)

    def _prepared(self, case: S.Case, geometry=None):
        """Windowed (optionally skull-stripped) volume on the network grid, with the undo function
        (to the native grid, or to the in-plane box with ``spacing_mm``)."""
        intracranial, box = self._geometry(case) if geometry is None else geometry
        image = S.preprocess(case, tuple(self.window), self.skull_strip, intracranial, box=box)
        if box is None:
            return self._to_grid(image, case, box)
        # the box's content only: its whole array is the box
        return S.to_physical_grid(image, case.spacing, float(self.spacing_mm), (0, image.shape[1], 0, image.shape[2]),
                                  self._multiple)

    def _image_and_mask(self, case: S.Case, *, binary: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The network's input and the case's mask on the same grid (``binary``: a 0/1 mask, else a float
        map with partial values at resampled edges)."""
        geometry = self._geometry(case)
        image, _ = self._prepared(case, geometry)
        mask, _ = self._to_grid(case.mask if binary else case.mask.astype(np.float32), case, geometry[1],
                                is_mask=binary)
        return image, mask

    def region_features(self, case: S.Case) -> np.ndarray | None:
        """The U-Net's bottleneck feature map averaged over ``case.mask`` (Zhong et al. 2021's representation).

        Parameters
        ----------
        case : radhe.nn.slices.Case
            A loaded case with a non-empty mask.

        Returns
        -------
        numpy.ndarray of shape (bottleneck channels,), or None when the mask vanishes at the
        bottleneck's resolution.
        """
        import torch
        from torch.nn import functional as F

        net = self._network()
        device = self._net_device
        image, mask = self._image_and_mask(case)
        zs = np.flatnonzero(mask.reshape(len(mask), -1).max(axis=1) > 0)
        x = torch.from_numpy(S.stack_context(image, zs, self.context).astype(np.float32)).to(device)
        with torch.inference_mode():
            deep = net.encode(x).float()
            weight = F.adaptive_avg_pool2d(torch.from_numpy(mask[zs][:, None]).to(device), deep.shape[-2:])
            total = weight.sum()
            if float(total) <= 0:
                return None
            return ((deep * weight).sum(dim=(0, 2, 3)) / total).cpu().numpy()

    @property
    def n_region_features(self) -> int:
        """Length of :meth:`region_features` (the U-Net's bottleneck channels)."""
        return int(self.base_channels * 2 ** (self.levels - 1))

    # ---------------------------------------------------------------------------------------- fit
    def fit(self, X: pd.DataFrame, y=None):
        """Train the U-Net on the cases of ``X`` that have a ground-truth mask.

        Parameters
        ----------
        X : pandas.DataFrame
            Manifest with ``case_id``, ``image_column`` and ``mask_column`` (and ``patient_id`` for
            the patient-level validation split). Cases without a mask path are skipped with a warning.
            With ``weights="pretrained"`` a manifest without masks (or ``epochs=0``) fits nothing: the
            shipped weights are used as they are.
        y : ignored

        Returns
        -------
        self
        """

        self._check_params()
        start = time.perf_counter()
        pretrained = self.weights == "pretrained"
        if pretrained:
            self._check_pretrained_parameters()
            check_frame(X, (self.image_column,), "HematomaSegmenter.fit")
            self._set_input_names(X)
            if self.epochs == 0 or self.mask_column not in X.columns or X[self.mask_column].map(S.is_missing).all():
                # the shipped weights as they are: no fine-tuning asked for, or no mask to fine-tune on
                self._use_pretrained(start)
                return self
        check_frame(X, (self.image_column, self.mask_column), "HematomaSegmenter.fit")
        self._set_input_names(X)
        seed = runtime.seed_from(self.random_state)
        rng = np.random.default_rng(seed)
        missing = X[self.mask_column].map(S.is_missing)
        rows = X[~missing]
        if len(rows) < len(X):
            skipped = ", ".join(str(c) for c in X.loc[missing, "case_id"][:10])
            warnings.warn(f"HematomaSegmenter.fit: {len(X) - len(rows)} case(s) without a ground-truth mask "
                          f"skipped: {skipped}", InputWarning, stacklevel=2)
        if len(rows) == 0:
            raise InputError(f"HematomaSegmenter.fit: no case has a '{self.mask_column}' mask to train on")

        images, masks, case_ids, spacings = [], [], [], []
        for row in rows.to_dict("records"):
            case = S.load_case(row[self.image_column], row[self.mask_column], case_id=row["case_id"],
                               require_mask=True, hu_check=self.hu_check)
            image, mask = self._image_and_mask(case, binary=True)
            if self.spacing_mm is None and image.shape[1:] != (images[0].shape[1:] if images else image.shape[1:]):
                raise InputError(
                    f"in-plane size {case.hu.shape[1:]} differs from the first case's; set spacing_mm= or input_size= "
                    f"so every slice is brought to one grid", case_id=case.case_id, path=row[self.image_column])
            images.append(image.astype(np.float16))
            masks.append(mask.astype(np.uint8))
            case_ids.append(case.case_id)
            spacings.append(case.spacing)
        if self.spacing_mm is not None:
            # cases cropped to their own heads: zero-pad every one to the largest, so slices batch together
            height = max(image.shape[1] for image in images)
            width = max(image.shape[2] for image in images)
            images = [np.pad(v, ((0, 0), (0, height - v.shape[1]), (0, width - v.shape[2]))) for v in images]
            masks = [np.pad(v, ((0, 0), (0, height - v.shape[1]), (0, width - v.shape[2]))) for v in masks]
        patients = (rows["patient_id"] if "patient_id" in rows.columns else rows["case_id"]).astype(str).to_numpy()
        train_idx, val_idx = _patient_split(patients, self.validation_fraction, rng)
        if pretrained and not len(val_idx):
            warnings.warn("HematomaSegmenter.fit: no validation patients (validation_fraction=0 or a single patient): "
                          "the shipped weights are replaced by the last epoch's without checking that they are "
                          "better", InputWarning, stacklevel=2)

        device = self._device()
        with runtime.torch_runtime(self._threads(), seed):
            net = self._build_network()
            if pretrained:
                shipped, shipped_sha256 = _pretrained_weights()
                net.load_state_dict(shipped)
            net = net.to(device)
            result = self._train_slices(net, images, masks, train_idx, val_idx, rng, device, start,
                                        validate_start=pretrained)
        self.best_epoch_ = result.best_epoch
        self.fine_tuned_ = result.best_epoch > 0
        self.weights_sha256_ = shipped_sha256 if pretrained else None
        self.train_cases_ = [case_ids[i] for i in train_idx]
        self.validation_cases_ = [case_ids[i] for i in val_idx]
        # the shipped weights kept (no epoch beat them): the scans they were trained on, not these
        self.training_spacing_mm_ = (_shipped_spacing_range() if pretrained and not self.fine_tuned_
                                     else _spacing_range(spacings, _shipped_spacing_range() if pretrained else None))
        self.fingerprint_ = self._fingerprint()
        self.network_parameters_ = {name: copy.deepcopy(getattr(self, name)) for name in NETWORK_PARAMETERS}
        self._net = None
        self.fit_time_ = time.perf_counter() - start
        return self

    def _use_pretrained(self, start: float) -> None:
        self.model_state_, self.weights_sha256_ = _pretrained_weights()
        self.history_ = pd.DataFrame(columns=["epoch", "train_loss", "val_dice", "seconds"])
        self.best_epoch_ = 0
        self.fine_tuned_ = False
        self.train_cases_, self.validation_cases_ = [], []
        self.training_spacing_mm_ = _shipped_spacing_range()
        self.fingerprint_ = self._fingerprint()
        self.network_parameters_ = {name: copy.deepcopy(getattr(self, name)) for name in NETWORK_PARAMETERS}
        self._net = None
        self.fit_time_ = time.perf_counter() - start

    @classmethod
    def pretrained(cls, **params) -> HematomaSegmenter:
        """The segmenter shipped with radhe, fitted and ready to predict (no data, no download).

        Its weights were trained only on synthetic data (``tools/train_pretrained_segmenter.py``;
        the model card in the docs says on what, and where it fails). ``fit`` on cases with masks
        fine-tunes them (``epochs`` epochs, default 15, learning rate 5e-4), keeping the shipped
        weights when no epoch improves the Dice of its validation patients.

        Parameters
        ----------
        **params
            Any parameters but the ones the weights fix (network, window, spacing, skull stripping),
            e.g. ``cache_dir``, ``n_threads``, ``threshold``, ``epochs``.

        Examples
        --------
        >>> seg = HematomaSegmenter.pretrained(cache_dir="masks")     # doctest: +SKIP
        >>> predicted = seg.transform(manifest)                       # doctest: +SKIP
        """
        fixed = sorted(set(params) & {*PRETRAINED_FIXED, "weights"})
        if fixed:
            raise ConfigurationError(f"HematomaSegmenter.pretrained: {fixed} are fixed by the shipped weights")
        segmenter = cls(**{**pretrained_parameters(), "epochs": 15, "learning_rate": 5e-4, **params})
        segmenter._check_params()
        segmenter._check_pretrained_parameters()
        segmenter._use_pretrained(time.perf_counter())
        return segmenter

    def _train_slices(self, net, images, masks, train_idx, val_idx, rng, device, start, *, validate_start=False):
        import torch
        from torch.nn import functional as F

        from radhe.nn.augment import augment_batch

        generator = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
        positives = [(c, z) for c in train_idx for z in np.flatnonzero(masks[c].any(axis=(1, 2)))]
        negatives = [(c, z) for c in train_idx for z in np.flatnonzero(~masks[c].any(axis=(1, 2)))]
        bf16 = runtime.use_bfloat16(device, self.training_precision)

        def epoch_batches(epoch):
            n_neg = min(len(negatives), int(round(self.negative_ratio * max(len(positives), 1))))
            chosen = positives + [negatives[i] for i in rng.choice(len(negatives), n_neg, replace=False)]
            for chunk in minibatches(rng.permutation(len(chosen)), self.batch_size):
                x, t = self._batch(images, masks, [chosen[i] for i in chunk])
                if self.augment:
                    x, t = augment_batch(x, t, generator)
                yield x.to(device), t.to(device)

        def batch_loss(net, batch):
            x, t = batch
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = net(x)
            logits = logits.float()
            loss = F.binary_cross_entropy_with_logits(logits, t) + soft_dice_loss(logits, t)
            return loss, {"train_loss": loss.detach()}

        def validation_dice(net):
            return float(np.mean([self._grid_dice(net, images[c], masks[c], device) for c in val_idx]))

        return self._train_network(
            net, epoch_batches, batch_loss, history_columns=["epoch", "train_loss", "val_dice", "seconds"],
            lr_schedule="cosine", validate=validation_dice if len(val_idx) else None, score_name="val_dice",
            patience=self.patience, max_fit_time=self.max_fit_time, start_time=start, validate_start=validate_start)

    def _batch(self, images, masks, batch):
        import torch

        x = np.stack([S.stack_context(images[c], np.array([z]), self.context)[0] for c, z in batch])
        t = np.stack([masks[c][z][None] for c, z in batch])
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(t.astype(np.float32))

    def _forward_volume(self, net, image: np.ndarray, device, *, bf16: bool = False,
                        bottleneck: bool = False, slices: np.ndarray | None = None):
        """Sigmoid probabilities ``(z, Y, X)`` of a grid volume (and bottleneck maps when asked).

        ``slices``: the only slice indices run (the others get probability 0); None runs them all.
        """
        import torch

        if not bottleneck:
            if slices is None:
                return self._forward_slices(net, image, np.arange(image.shape[0]), device, bf16)
            prob = np.zeros(image.shape, dtype=np.float32)
            if len(slices):
                prob[slices] = self._forward_slices(net, image, np.asarray(slices), device, bf16)
            return prob
        probs, feats = [], []
        bs = max(1, int(self.inference_batch_size))
        with torch.inference_mode():
            for s in range(0, image.shape[0], bs):
                x = S.stack_context(image, np.arange(s, min(s + bs, image.shape[0])), self.context)
                x = torch.from_numpy(x.astype(np.float32)).to(device)
                if bf16:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                    if bottleneck:
                        logits, deep = net(x, return_bottleneck=True)
                        feats.append(deep.float().cpu().numpy())
                    else:
                        logits = net(x)
                probs.append(torch.sigmoid(logits.float())[:, 0].cpu().numpy())
        prob = np.concatenate(probs)
        return (prob, np.concatenate(feats)) if bottleneck else prob

    def _forward_slices(self, net, image: np.ndarray, slices: np.ndarray, device, bf16: bool) -> np.ndarray:
        """Sigmoid probabilities of the ``slices`` of a grid volume, ``(len(slices), Y, X)``."""
        import torch

        probs = []
        bs = max(1, int(self.inference_batch_size))
        with torch.inference_mode():
            for s in range(0, len(slices), bs):
                x = S.stack_context(image, np.asarray(slices[s:s + bs]), self.context)
                x = torch.from_numpy(x.astype(np.float32)).to(device)
                if bf16:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = net(x)
                probs.append(torch.sigmoid(logits.float())[:, 0].cpu().numpy())
        return np.concatenate(probs) if probs else np.zeros((0,) + image.shape[1:], dtype=np.float32)

    def _grid_dice(self, net, image, mask, device) -> float:
        net.eval()
        prob = self._forward_volume(net, image.astype(np.float32), device)
        from radhe.segmentation.metrics import dice_score

        return dice_score(mask, prob >= self.threshold)

    def _fingerprint(self) -> str:
        digest = hashlib.sha1()
        for key, value in self.model_state_.items():
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(value.numpy()).tobytes())
        settings = (tuple(self.window), self.skull_strip, self.input_size, self.context, self.threshold,
                    self.min_component_ml, self.max_components, self.fill_holes, self.on_empty)
        if self.spacing_mm is not None or self.brain_only:
            settings += (self.spacing_mm, self.brain_only)
        digest.update(repr(settings).encode())
        return digest.hexdigest()[:16]

    # ----------------------------------------------------------------------------------- predict
    def predict_mask(self, image, *, case_id=None):
        """Predict one case's mask.

        Parameters
        ----------
        image : path-like
            The CT volume (HU).
        case_id : object, optional
            Named in messages; default: the file name.

        Returns
        -------
        mask : numpy.ndarray of uint8, ``(z, y, x)``
            On the image's grid, in its file's voxel order (``SimpleITK.GetArrayFromImage``'s); the
            network saw the voxels in the canonical orientation (:class:`radhe.nn.slices.Case`).
        info : dict
            ``voxels``, ``volume_ml``, ``max_probability``, ``status`` ("ok", "fallback", "empty"),
            ``reference`` (the image, for its geometry).
        """
        if case_id is None:
            case_id = Path(str(image)).name
        case = S.load_case(image, None, case_id=case_id, hu_check=self.hu_check)
        self._warn_spacing(case)
        mask, info = self._predict_case(case)
        if info["message"]:
            warnings.warn(info["message"], InputWarning, stacklevel=2)
        return mask, info

    def _predict_case(self, case: S.Case):
        net = self._network()
        device = self._net_device
        geometry = self._geometry(case)
        intracranial, box = geometry
        grid, undo = self._prepared(case, geometry)
        slices = None
        if self.spacing_mm is not None and intracranial is not None and not intracranial.all():
            slices = np.flatnonzero(intracranial.any(axis=(1, 2)))
        # the probabilities of the network's box only (0 outside it): the thresholds and the anatomy
        # below need not pass over the whole scan
        region = (slice(None),) if box is None else (slice(None), slice(box[0], box[1]), slice(box[2], box[3]))
        grid_prob = self._forward_volume(net, grid, device, bf16=runtime.use_bfloat16(device, self.inference_precision),
                                         slices=slices)
        # only the slices with a probability above the threshold on the network's grid are mapped back:
        # the bilinear map back takes convex combinations of the grid's values, so no other slice can
        # reach the threshold (the whole map is made below where a case ends empty); the margin covers
        # float32 rounding in the interpolation (a few units in the last place)
        peaks = grid_prob.reshape(len(grid_prob), -1).max(axis=1, initial=0.0)
        hot = np.flatnonzero(peaks >= self.threshold - 1e-6)
        mask = np.zeros(case.hu.shape, dtype=bool)
        prob = np.zeros(mask[region].shape, dtype=np.float32)
        if hot.size:
            mapped = undo(grid_prob[hot], crop=True)
            prob[hot] = mapped
            mask[region][hot] = mapped >= self.threshold
        max_prob, kept = None, None
        if self.brain_only:
            kept = S.brain_only(mask, case.hu, case.spacing, intracranial)
            if kept.any():
                # the probabilities anatomy allows (see below) are the kept voxels' and ones below the
                # threshold: their peak is a kept voxel's
                max_prob = float(prob[kept[region]].max())
        predicted = mask
        raw_peak = None  # the network's peak, where it differs from the one anatomy allows (messages only)
        mask = postprocess(mask if kept is None else kept, case.voxel_ml, self.min_component_ml, self.fill_holes,
                           max_components=self.max_components)
        voxels = int(np.count_nonzero(mask))
        if not voxels and hot.size < len(grid_prob):
            prob = undo(grid_prob, crop=True)  # the peak and the fallback read the whole map
        if kept is not None and (max_prob is None or not voxels):
            # the fallback region must not bring back what anatomy removed (a rim along the skull, bone):
            # it reads only the probabilities anatomy allows
            hu = case.hu[region]
            allowed = ~(predicted[region] & ~kept[region]) & (hu > S.HAEMATOMA_HU[0]) & (hu < S.HAEMATOMA_HU[1])
            if intracranial is not None:
                allowed &= intracranial[region]
            raw_peak = float(prob.max()) if prob.size else 0.0
            prob = prob * allowed
        if max_prob is None:
            max_prob = float(prob.max()) if prob.size else 0.0
        status = "ok"
        if not voxels:
            status = "empty"
            above = int(np.count_nonzero(predicted))
            ruled_out = above - (above if kept is None else int(np.count_nonzero(kept)))
            anatomy = ("where anatomy rules a parenchymal haematoma out (outside the brain, in bone, air or fat, or "
                       "as a rim along the skull)")
            if not above:
                peak = f"{max_prob:.3f}" if raw_peak is None or raw_peak == max_prob else (
                    f"{raw_peak:.3f}; {max_prob:.3f} where anatomy allows a haematoma")
                reason = f"no haematoma predicted (peak probability {peak} < threshold {self.threshold})"
            elif ruled_out == above:
                reason = f"no haematoma predicted: the {above} voxel(s) above the threshold {self.threshold} all lie {anatomy}"
            elif ruled_out:
                reason = (f"no haematoma predicted: of the {above} voxel(s) above the threshold {self.threshold}, "
                          f"{ruled_out} lie {anatomy}, the others in regions smaller than min_component_ml = "
                          f"{self.min_component_ml} mL")
            else:
                reason = (f"no haematoma predicted: the regions above the threshold {self.threshold} are all "
                          f"smaller than min_component_ml = {self.min_component_ml} mL")
            if self.on_empty == "raise":
                raise InputError(reason, case_id=case.case_id, path=case.image_path)
            message = f"{format_case(case.case_id)}: {reason}"
            fallback = None
            if self.on_empty == "fallback" and max_prob > 0:
                whole = np.zeros(case.hu.shape, dtype=np.float32)
                whole[region] = prob
                fallback = fallback_region(whole, max_voxels=int(FALLBACK_MAX_ML / case.voxel_ml))
            if fallback is not None and fallback.any():
                mask = fallback
                status = "fallback"
                message += f"; using the most probable region ({int(np.count_nonzero(mask))} voxels) instead"
            elif fallback is not None:
                message += (f"; no region stands out to fall back to (the region around the peak probability holds "
                            f"more than {FALLBACK_MAX_ML:g} mL or half the scan: the probabilities are nearly flat, "
                            "as an untrained or failing network gives): wrote an empty mask")
            elif self.on_empty == "fallback":
                message += ("; no region to fall back to (every voxel that anatomy allows has probability 0): "
                            "wrote an empty mask")
            else:
                message += "; wrote an empty mask"
            voxels = int(np.count_nonzero(mask))
        info = {"voxels": voxels, "volume_ml": voxels * case.voxel_ml,
                "max_probability": max_prob, "status": status, "reference": case.reference,
                "message": None if status == "ok" else message}
        return case.to_native(np.asarray(mask, dtype=bool).view(np.uint8)), info

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Predict every case's mask, write it to ``cache_dir`` and add its path as ``output_column``.

        Returns
        -------
        pandas.DataFrame
            A copy of ``X`` with ``output_column`` holding the predicted masks' paths (same index).
        """
        check_is_fitted(self, "model_state_")
        self._check_params()
        self._check_network_parameters()  # also where every mask is reused and the network never runs
        check_frame(X, (self.image_column,), "HematomaSegmenter.transform")
        # the fingerprint hashes the weights and the *current* post-processing settings; the folder is
        # absolute, so the paths written stay valid from a manifest saved elsewhere
        folder = self._mask_folder()
        folder.mkdir(parents=True, exist_ok=True)
        paths, problems, off_range = [], [], []
        written: dict[Path, object] = {}
        settings = self._reuse_settings()
        with runtime.torch_runtime(self._threads(), None, deterministic=False):
            for case_id, image in zip(X["case_id"], X[self.image_column], strict=True):
                path = folder / f"{_safe_name(case_id)}.{self.output_format}"
                if path in written and str(written[path]) != str(image):
                    # one file per case id: a second image under the same id would overwrite the first
                    raise InputError(f"case_id is not unique in X (images '{written[path]}' and '{image}'); "
                                     "predicted masks are stored by case_id", case_id=case_id)
                written[path] = image
                paths.append(str(path))
                key = self._reuse_key(file_fingerprint(image), settings)
                record = self._reusable_record(path, image, key)
                if record is None:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        case = S.load_case(image, None, case_id=case_id, hu_check=self.hu_check)
                    replayed = [w for w in caught if issubclass(w.category, tuple(_WARNING_CLASSES.values()))]
                    for w in caught:  # as if not caught: now, before the prediction can fail
                        warnings.warn(w.message, w.category, stacklevel=2)
                    mask, info = self._predict_case(case)
                    _atomic_write(mask, info["reference"], path)
                    record = {"case_id": str(case_id), "image": str(image), "path": str(path),
                              "voxels": info["voxels"], "volume_ml": info["volume_ml"],
                              "max_probability": info["max_probability"], "status": info["status"],
                              "message": info["message"], "reuse_key": key,
                              "spacing_mm": [float(v) for v in case.spacing],
                              "load_warnings": [[_warning_class_name(w.category), str(w.message)] for w in replayed]}
                    _atomic_write_text(json.dumps(record), _record_path(path))
                else:
                    # the same image file under the same weights and settings: its mask is already written
                    for category, message in record["load_warnings"]:
                        warnings.warn(message, _WARNING_CLASSES[category], stacklevel=2)
                if record["message"]:
                    problems.append(record["message"])
                unseen = spacing_warning(record["spacing_mm"], getattr(self, "training_spacing_mm_", None))
                if unseen:
                    off_range.append(f"{format_case(case_id)}: {unseen} (file '{image}')")
        if off_range:  # one warning for the call, not one per case (a cross-validation transforms often)
            warn_cases(f"HematomaSegmenter: voxel size outside the sizes the network was trained on in "
                       f"{len(off_range)} of {len(X)} case(s)", off_range, stacklevel=2)
        if problems:
            warn_cases(f"HematomaSegmenter: no haematoma predicted in {len(problems)} of {len(X)} case(s)", problems,
                       stacklevel=2)
        out = X.copy()
        out[self.output_column] = paths
        return out

    def _reuse_settings(self) -> dict:
        """The settings outside the folder's fingerprint that a reused prediction must share.

        The HU check, the arithmetic (bfloat16 or float32 on this device), the network's dilation
        and :data:`PREDICTION_VERSION` (bumped when radhe's prediction or post-processing code
        changes what it writes).
        """
        return {"hu_check": self.hu_check, "dilation": self.dilation,
                "bfloat16": bool(runtime.use_bfloat16(self._device(), self.inference_precision)),
                "version": PREDICTION_VERSION}

    @staticmethod
    def _reuse_key(stamp, settings: dict) -> dict | None:
        """What a recorded prediction must match to be reused, besides the folder's fingerprint.

        The image's content stamp (size, modification and change time; a DICOM folder: of every
        file) and :meth:`_reuse_settings`. None when the image cannot be stamped.
        """
        if stamp is None or stamp.get("missing"):
            return None
        return json.loads(json.dumps({"image_stamp": stamp, **settings}))  # as read back (tuples become lists)

    def _reusable_record(self, path: Path, image, key) -> dict | None:
        """The record of a mask this segmenter already predicted from this very file, or None.

        ``path`` lies in the folder of the fitted weights' and post-processing settings' fingerprint,
        so a mask there is this model's prediction; it is reused only when its record names the same
        image with the same :meth:`_reuse_key` and the mask file is still there. A grid search or a
        cross-validation with a segmenter that is not retrained per fold (``pretrained()`` with
        ``epochs=0``) then predicts each case once.
        """
        if key is None or not path.is_file():
            return None
        try:
            record = json.loads(_record_path(path).read_text())
        except (OSError, ValueError):
            return None
        if (record.get("image") != str(image) or record.get("reuse_key") != key or "load_warnings" not in record
                or "spacing_mm" not in record):
            return None
        if any(category not in _WARNING_CLASSES for category, _ in record["load_warnings"]):
            return None
        return record

    def _mask_folder(self) -> Path:
        base = Path(self.cache_dir if self.cache_dir is not None else default_cache_dir())
        return base.expanduser().resolve() / self._fingerprint()

    def fit_transform(self, X, y=None, **fit_params):
        return self.fit(X, y).transform(X)

    def prediction_records(self, X: pd.DataFrame) -> pd.DataFrame:
        """What the last :meth:`transform` of each case of ``X`` predicted (``transform`` keeps no state).

        Each predicted mask has a small JSON record beside it in ``cache_dir``; this reads them.

        Returns
        -------
        pandas.DataFrame
            Same index as ``X``: ``case_id``, ``path`` (the predicted mask), ``voxels``,
            ``volume_ml`` (mL), ``max_probability``, ``status`` ("ok", "fallback" or "empty").

        Raises
        ------
        radhe.errors.InputError
            A case of ``X`` this fitted segmenter has not predicted, or predicted from another image
            (another path, or the same path since rewritten).
        """
        check_is_fitted(self, "model_state_")
        self._check_network_parameters()
        check_frame(X, (self.image_column,), "HematomaSegmenter.prediction_records")
        folder = self._mask_folder()
        settings = self._reuse_settings()
        records = []
        for case_id, image in zip(X["case_id"], X[self.image_column], strict=True):
            path = _record_path(folder / f"{_safe_name(case_id)}.{self.output_format}")
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                raise InputError("no prediction of this case by this fitted segmenter: call transform first",
                                 case_id=case_id, path=path) from None
            if record.get("image") != str(image):
                raise InputError(f"the recorded prediction is of image '{record.get('image')}', not '{image}'",
                                 case_id=case_id, path=path)
            stamp = record.get("reuse_key", {}) or {}
            now = self._reuse_key(file_fingerprint(image), settings)
            if now is not None and stamp.get("image_stamp") is not None and stamp["image_stamp"] != now["image_stamp"]:
                raise InputError(f"the image '{image}' may have changed since its prediction was recorded (its size, "
                                 "modification or status-change time differ): call transform again", case_id=case_id,
                                 path=path)
            records.append({k: record[k] for k in PREDICTION_RECORD_COLUMNS})
        return pd.DataFrame(records, index=X.index, columns=list(PREDICTION_RECORD_COLUMNS))

    def score(self, X: pd.DataFrame, y=None) -> float:
        """Mean per-case Dice of the predicted masks against ``mask_column``."""
        from radhe.segmentation.metrics import dice_score

        scores = []
        for case_id, image, mask in zip(X["case_id"], X[self.image_column], X[self.mask_column], strict=True):
            case = S.load_case(image, mask, case_id=case_id, require_mask=True, hu_check=self.hu_check)
            pred, _ = self._predict_case(case)
            scores.append(dice_score(case.to_native(case.mask), pred))
        return float(np.mean(scores))

    def _set_input_names(self, X: pd.DataFrame) -> None:
        # the manifest's columns, which transform passes through (get_feature_names_out)
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)

    def get_feature_names_out(self, input_features=None):
        """Names of ``transform``'s columns: the input's (by default those of the manifest given to
        :meth:`fit`; none for :meth:`pretrained` weights not fitted on a manifest) plus ``output_column``
        (once: a manifest that already holds it gets it replaced)."""
        names = list(input_features) if input_features is not None else list(getattr(self, "feature_names_in_", []))
        return np.asarray([n for n in names if n != self.output_column] + [self.output_column], dtype=object)

    def set_output(self, *, transform=None):
        # transform() always returns a DataFrame (a manifest); nothing to configure.
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags


# -------------------------------------------------------------------------------------- utilities
#: Parameters fixed by the shipped weights: the network and what it sees.
PRETRAINED_FIXED = ("base_channels", "levels", "dilation", "context", "window", "skull_strip", "spacing_mm",
                    "input_size")

#: Parameters the fitted network depends on (its architecture and what it was shown): fixed from ``fit``
#: on (``network_parameters_``); a prediction with others set refuses to run.
NETWORK_PARAMETERS = PRETRAINED_FIXED


def pretrained_parameters() -> dict:
    """The parameters of :meth:`HematomaSegmenter.pretrained` (from the shipped weights' record)."""
    from radhe.nn.pretrained import SEGMENTER_WEIGHTS, weights_info

    parameters = dict(weights_info(SEGMENTER_WEIGHTS)["parameters"])
    parameters["window"] = tuple(parameters["window"])
    return {**parameters, "weights": "pretrained"}


def _pretrained_weights() -> tuple[dict, str]:
    """The shipped weights' ``state_dict`` and the SHA-256 they were checked against."""
    from radhe.nn.pretrained import SEGMENTER_WEIGHTS, load_weights

    state, info = load_weights(SEGMENTER_WEIGHTS)
    return state, info["sha256"]


def _shipped_spacing_range() -> dict:
    from radhe.nn.pretrained import SEGMENTER_TRAINING_SPACING_MM

    return {key: [tuple(float(v) for v in span)] for key, span in SEGMENTER_TRAINING_SPACING_MM.items()}


def _spacing_range(spacings, start: dict | None = None) -> dict:
    """``{"in_plane": [(min, max), ...], "slice": [(min, max), ...]}`` (mm): the cases' ``(x, y, z)`` spacings
    as one interval per axis, beside the intervals of ``start``; intervals that overlap (within
    :data:`SPACING_TOLERANCE`) are merged, others stay apart (sizes between them were not trained on)."""
    spacings = np.asarray(spacings, dtype=float).reshape(-1, 3)
    spans = {"in_plane": [(float(spacings[:, :2].min()), float(spacings[:, :2].max()))],
             "slice": [(float(spacings[:, 2].min()), float(spacings[:, 2].max()))]}
    merged = {}
    for key, found in spans.items():
        intervals = sorted([tuple(span) for span in (start or {}).get(key, [])] + found)
        out = [intervals[0]]
        for lo, hi in intervals[1:]:
            if lo <= out[-1][1] * SPACING_TOLERANCE ** 2:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        merged[key] = out
    return merged


#: How far (as a factor) a case's voxel size may lie outside the sizes the network was trained on before
#: a prediction warns that it is unvalidated there.
SPACING_TOLERANCE = 1.15


def spacing_warning(spacing, trained: dict | None) -> str | None:
    """What to tell about a scan of voxel size ``spacing`` (``(x, y, z)`` mm) for a network trained on the
    ``trained`` intervals (``training_spacing_mm_``); None when inside one of them (within
    :data:`SPACING_TOLERANCE`) on both axes."""
    if not trained:
        return None
    found = {"in_plane": (min(spacing[0], spacing[1]), max(spacing[0], spacing[1])), "slice": (spacing[2],) * 2}
    outside = []
    for key, what in (("in_plane", "in-plane pixels"), ("slice", "slices")):
        intervals = [tuple(span) for span in trained[key]]
        if not any(lo / SPACING_TOLERANCE <= found[key][0] and found[key][1] <= hi * SPACING_TOLERANCE
                   for lo, hi in intervals):
            size = (f"{found[key][0]:.2f} mm" if found[key][0] == found[key][1]
                    else f"{found[key][0]:.2f}-{found[key][1]:.2f} mm")
            ranges = " and ".join(f"{lo:.2f}-{hi:.2f} mm" for lo, hi in intervals)
            outside.append(f"{what} of {size} (trained on {ranges})")
    if not outside:
        return None
    return ("voxel size outside what the segmenter was trained on: " + "; ".join(outside)
            + "; its masks are unvalidated there (check them, or fine-tune on masks at this resolution)")


def _differs(value, expected) -> bool:
    if isinstance(expected, (list, tuple)):
        if not isinstance(value, (list, tuple, np.ndarray)) or len(value) != len(expected):
            return True
        return [float(v) for v in value] != [float(v) for v in expected]
    if isinstance(expected, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) != expected
    return value != expected


def postprocess(mask: np.ndarray, voxel_ml: float, min_component_ml: float, fill_holes: bool, *,
                max_components: int | None = None) -> np.ndarray:
    """Remove 3-D components below ``min_component_ml`` (and beyond the ``max_components`` largest),
    then fill holes (per slice, then in 3-D). Returns a new array; ``mask`` is not modified."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    # work on the mask's bounding box plus one voxel: components and holes are the same there (every
    # background voxel outside the box reaches the volume's border without crossing the box)
    box = S.padded_box(mask)
    out = np.zeros_like(mask)
    out[box] = _postprocess_box(mask[box].copy(), voxel_ml, min_component_ml, fill_holes, max_components)
    return out


def _postprocess_box(mask: np.ndarray, voxel_ml: float, min_component_ml: float, fill_holes: bool,
                     max_components: int | None) -> np.ndarray:
    if (min_component_ml and min_component_ml > 0) or max_components is not None:
        labels, count = ndimage.label(mask)
        if count:
            sizes = np.bincount(labels.ravel())
            keep = sizes * voxel_ml >= (min_component_ml or 0)
            keep[0] = False
            if max_components is not None and keep.sum() > max_components:
                ranked = np.argsort(np.where(keep, sizes, -1))[::-1]
                keep[ranked[max(0, int(max_components)):]] = False
            mask = keep[labels]
    if fill_holes and mask.any():
        for z in np.flatnonzero(mask.any(axis=(1, 2))):
            mask[z] = S.fill_holes(mask[z])
        mask = S.fill_holes(mask)
    return mask


#: The most probable region :func:`fallback_region` may return (mL): a region larger than the largest
#: haematomas (massive ones reach 150-250 mL) does not stand out of the probability map (an untrained or
#: failed network's nearly flat probabilities); the case then gets an empty mask, named, not a mask of the head.
FALLBACK_MAX_ML = 300.0


def fallback_region(prob: np.ndarray, max_voxels: int | None = None) -> np.ndarray:
    """The connected region around the peak probability; empty when every probability is 0, or when
    that region holds more than ``max_voxels`` voxels (or half the volume, without ``max_voxels``).

    Thresholded halfway between the volume's median probability and its peak: a peak that stands out
    gives a small region around it; a nearly flat map (most voxels at the peak) gives none, rather
    than the whole volume.
    """
    peak = float(prob.max()) if prob.size else 0.0
    if not peak > 0:
        # no voxel has any probability: thresholding at 0 would return the whole volume
        return np.zeros(prob.shape, dtype=bool)
    region = prob >= (float(np.median(prob)) + peak) / 2
    labels, _ = ndimage.label(region)
    peak_label = labels[np.unravel_index(int(np.argmax(prob)), prob.shape)]
    out = labels == peak_label
    limit = prob.size // 2 if max_voxels is None else min(int(max_voxels), prob.size // 2)
    if np.count_nonzero(out) > limit:
        return np.zeros(prob.shape, dtype=bool)
    return out


def _patient_split(patients: np.ndarray, fraction: float, rng: np.random.Generator):
    unique = np.unique(patients)
    n_val = int(round(fraction * len(unique)))
    if fraction > 0 and len(unique) >= 2:
        n_val = min(max(n_val, 1), len(unique) - 1)
    else:
        n_val = 0
    val_patients = set(rng.permutation(unique)[:n_val].tolist())
    val = np.array([i for i, p in enumerate(patients) if p in val_patients], dtype=int)
    train = np.array([i for i, p in enumerate(patients) if p not in val_patients], dtype=int)
    return train, val


def _safe_name(case_id) -> str:
    text = str(case_id)
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)
    if name != text or name in ("", ".", ".."):
        # "a/b" and "a_b" must not share a file: ids that needed changing get a digest of the original
        name = f"{name.strip('.') or 'case'}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]}"
    return name


#: Columns of :meth:`HematomaSegmenter.prediction_records`.
PREDICTION_RECORD_COLUMNS = ("case_id", "path", "voxels", "volume_ml", "max_probability", "status")


#: Bumped when the masks ``transform`` writes for the same weights, settings and image could change
#: (prediction or post-processing code): recorded masks of another version are predicted again.
#: 2: images not stored in the canonical orientation are reoriented before the network; a skull ring
#: cut by the field of view is closed by the field's edge. 3: BatchNorm folded into the convolutions
#: for inference (probabilities change in the last bits). 4: a skull ring open between closed ones is
#: closed by its bone's convex hull; no whole-volume fallback region where anatomy allows nothing.
#: 5: records hold the scan's voxel size (for the warning on sizes the network was not trained on).
PREDICTION_VERSION = 5

#: Warnings of reading an image that are recorded and raised again when its prediction is reused.
_WARNING_CLASSES = {"radhe.errors.InputWarning": InputWarning, "builtins.UserWarning": UserWarning}


def _warning_class_name(category) -> str:
    """The recorded name of a warning class: the nearest of :data:`_WARNING_CLASSES` it derives from."""
    for name, cls in _WARNING_CLASSES.items():
        if issubclass(category, cls):
            return name
    raise ValueError(f"{category} is not a recorded warning class")


def _record_path(mask_path: Path) -> Path:
    return mask_path.with_name(mask_path.name + ".json")


def _atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_write(mask: np.ndarray, reference, path: Path) -> None:
    from radhe.io.image import write_image

    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}{suffix}")
    write_image(mask, tmp, reference=reference)
    os.replace(tmp, path)
