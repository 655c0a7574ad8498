"""`CNNEmbedder`: fixed-length CNN features of the haematoma, learnt inside each training fold.

Three kinds (``kind=``):

``"roi_cnn"``
    A small CNN (:class:`radhe.nn.networks.RoiCNN`) trained on the haematoma-expansion label
    with class weighting, on ROI crops of the slice with the largest haematoma area and the
    ``n_slices`` slices on each side (Bo et al. 2023's slice choice); each slice is one training
    sample labelled with its case's outcome. A case's features are its slices' penultimate-layer
    activations, averaged. ``pooling="haar"`` uses Haar-wavelet pooling (Ohkita's wavelet CNN).
``"unet_bottleneck"``
    The deepest feature map of a :class:`~radhe.segmentation.HematomaSegmenter` U-Net, averaged
    over the haematoma (Zhong et al. 2021's two-output idea: the segmentation encoder's
    representation feeds the expansion classifier, here the pipeline's ``"classify"`` step).
``"backbone"``
    A user-supplied torch module (e.g. a torchvision Inception-v3 with ``fc`` replaced by
    ``torch.nn.Identity()``), loaded from a local weights file (``backbone_weights=``), applied to
    the same ROI crops; frozen by default, fine-tuned on the label with ``finetune_backbone=True``.
    Nothing is ever downloaded.

Features are named ``cnn__0``, ``cnn__1``, ...; a case whose mask is empty or missing gets NaN
features and an :class:`~radhe.errors.InputWarning` naming it (never silent zeros).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from radhe._checks import check_frame
from radhe._compat import HasMethods, StrOptions
from radhe.errors import ConfigurationError, InputError
from radhe.nn import runtime
from radhe.nn.base import RoiCNNEstimator, torch_estimator
from radhe.nn.training import minibatches

__all__ = ["CNNEmbedder"]

_KINDS = ("roi_cnn", "unet_bottleneck", "backbone")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@torch_estimator
class CNNEmbedder(RoiCNNEstimator, TransformerMixin, BaseEstimator):
    """Deep features of the haematoma region, as a feature-union branch (family ``cnn``).

    Parameters
    ----------
    kind : {"roi_cnn", "unet_bottleneck", "backbone"}, default "roi_cnn"
        See the module documentation.
    segmenter : HematomaSegmenter or None, default None
        For ``kind="unet_bottleneck"``. An unfitted segmenter (or None: ``HematomaSegmenter()`` with
        its defaults) is cloned and trained in ``fit`` on the training fold's ground-truth masks
        (its own ``mask_column``, default ``"mask"``). A *fitted* segmenter is used as it is, not
        retrained; note that cloning (as GridSearchCV and cross_validate do) drops fitted state, so
        to keep a pre-trained segmenter inside a cross-validation wrap it in
        ``sklearn.frozen.FrozenEstimator`` — and make sure it never saw the test cases.
    backbone : torch.nn.Module, callable or None, default None
        For ``kind="backbone"``: a module mapping ``(n, 3, crop_size, crop_size)`` to ``(n, d)``
        (or ``(n, d, 1, 1)``), or a zero-argument callable returning one.
    backbone_weights : str, path-like or None, default None
        A local ``state_dict`` file loaded into ``backbone`` in ``fit`` (``torch.load`` with
        ``weights_only=True``, CPU mapping).
    finetune_backbone : bool, default False
        Train the backbone (with a linear head) on the label instead of using it frozen.
    backbone_normalize : bool, default True
        Normalise the (replicated grey-level) input with ImageNet's mean and standard deviation.
    [shared: n_features, base_channels, depth, pooling, mask_channel]
    [shared: crop_size, roi_mm, n_slices, window]
    [shared: epochs, batch_size, learning_rate, weight_decay]
    class_weight : {"balanced", None}, default "balanced"
        "balanced" weights positive samples by ``n_negative / n_positive`` in the loss.
    [shared: augment, image_column, mask_column, hu_check]
        (:func:`radhe.make_pipeline` points ``mask_column`` at the segmenter's predicted masks.)
    [shared: device, n_threads, random_state, verbose]

    Attributes
    ----------
    n_features_out_ : int
    feature_names_out_ : list of str
        ``cnn__0`` ... ``cnn__<n-1>``.
    model_state_ : dict or None
        Trained ROI CNN (or fine-tuned backbone) weights.
    segmenter_ : HematomaSegmenter or None
        The segmenter used by ``kind="unet_bottleneck"``.
    backbone_ : torch.nn.Module or None
    history_ : pandas.DataFrame
        Training loss per epoch (trained kinds).
    failures_ : pandas.DataFrame
        ``case_id`` and ``problem`` of the training cases given NaN features by ``fit``/``fit_transform``.
        Cases given NaN features by ``transform`` are named in an :class:`~radhe.errors.InputWarning`
        (``transform`` never changes fitted state).
    """

    _own_parameter_constraints = {
        "kind": [StrOptions({"roi_cnn", "unet_bottleneck", "backbone"})],
        "segmenter": [HasMethods(["fit", "region_features"]), None],
        "backbone": [callable, None],
        "backbone_weights": [str, os.PathLike, None],
        "finetune_backbone": ["boolean"],
        "backbone_normalize": ["boolean"],
        "class_weight": [StrOptions({"balanced"}), None],
    }

    _nan_outputs = "CNN features"

    kind: str = dataclasses.field(default="roi_cnn", kw_only=False)
    segmenter: object = None
    backbone: object = None
    backbone_weights: object = None
    finetune_backbone: bool = False
    backbone_normalize: bool = True
    class_weight: str | None = "balanced"

    # ------------------------------------------------------------------------------------- checks
    def _check_params(self) -> None:
        self._check_shared_parameters()
        if self.kind not in _KINDS:
            raise ConfigurationError(f"kind must be one of {_KINDS}, got {self.kind!r}")
        if self.kind == "backbone" and self.backbone is None:
            raise ConfigurationError("kind='backbone' needs backbone= (a torch module or a callable returning one)")
        if self.kind != "backbone" and self.backbone is not None:
            raise ConfigurationError(f"backbone= is only used with kind='backbone' (kind is {self.kind!r})")
        if self.class_weight not in ("balanced", None):
            raise ConfigurationError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")

    def _needs_label(self) -> bool:
        return self.kind == "roi_cnn" or (self.kind == "backbone" and self.finetune_backbone)

    # ---------------------------------------------------------------------------------------- fit
    def fit(self, X: pd.DataFrame, y=None):
        """Train the embedding network on the training fold ``(X, y)``.

        ``y`` (0/1 haematoma expansion, aligned with ``X``) is required by ``kind="roi_cnn"`` and by a
        fine-tuned backbone; ``kind="unet_bottleneck"`` trains its segmenter on ``X``'s ground-truth masks.
        """
        self._fit(X, y)
        return self

    def fit_transform(self, X: pd.DataFrame, y=None, **fit_params) -> pd.DataFrame:
        crops = self._fit(X, y)
        if crops is None:
            return self._bottleneck_features(X, record=True)
        return self._features_from_crops(X, crops)

    def _fit(self, X, y):
        self._check_params()
        check_frame(X, (self.image_column, self.mask_column), "CNNEmbedder.fit")
        start = time.perf_counter()
        seed = runtime.seed_from(self.random_state)
        self.model_state_, self.segmenter_, self.backbone_ = None, None, None
        self.history_ = pd.DataFrame(columns=["epoch", "loss", "seconds"])
        self.failures_ = pd.DataFrame(columns=["case_id", "problem"])
        if self._needs_label():
            if y is None:
                raise ConfigurationError(f"CNNEmbedder(kind={self.kind!r}) is trained on the outcome: fit needs y")
            y = np.asarray(y, dtype=float).ravel()
            if len(y) != len(X):
                raise InputError(f"CNNEmbedder.fit: y has {len(y)} values for {len(X)} manifest rows")

        if self.kind == "unet_bottleneck":
            self.segmenter_ = self._fit_segmenter(X, seed)
            self.n_features_out_ = self.segmenter_.n_region_features
            self._finish(start)
            return None

        crops = self._roi_crops(X, self.mask_column, record=True)
        with runtime.torch_runtime(self._threads(), seed):
            if self.kind == "backbone":
                self.backbone_ = self._load_backbone()
                if self.finetune_backbone:
                    self._train(X, y, crops, seed)
                self.n_features_out_ = self._backbone_width()
            else:
                self._train(X, y, crops, seed)
                self.n_features_out_ = int(self.n_features)
        self._finish(start)
        return crops

    def _finish(self, start):
        self.feature_names_out_ = [f"cnn__{i}" for i in range(self.n_features_out_)]
        self._net = None
        self.fit_time_ = time.perf_counter() - start

    def _fit_segmenter(self, X, seed):
        from radhe.segmentation import HematomaSegmenter

        seg = self.segmenter
        inner = getattr(seg, "estimator", None)  # sklearn.frozen.FrozenEstimator
        if inner is not None and hasattr(inner, "model_state_"):
            return inner
        if seg is not None and hasattr(seg, "model_state_"):
            return seg
        seg = clone(seg) if seg is not None else HematomaSegmenter()
        if not isinstance(seg, HematomaSegmenter):
            raise ConfigurationError(f"segmenter must be a HematomaSegmenter, got {type(seg).__name__}")
        if seg.random_state is None:
            seg.set_params(random_state=seed)
        if self.n_threads is not None and seg.n_threads is None:
            seg.set_params(n_threads=self.n_threads)
        return seg.fit(X)

    # ------------------------------------------------------------------------------------- models
    def _load_backbone(self):
        import torch

        backbone = self.backbone
        if not isinstance(backbone, torch.nn.Module):
            if not callable(backbone):
                raise ConfigurationError("backbone must be a torch.nn.Module or a callable returning one")
            backbone = backbone()
            if not isinstance(backbone, torch.nn.Module):
                raise ConfigurationError(f"backbone() returned {type(backbone).__name__}, not a torch.nn.Module")
        else:
            backbone = copy.deepcopy(backbone)
        if self.backbone_weights is not None:
            try:
                state = torch.load(str(self.backbone_weights), map_location="cpu", weights_only=True)
            except FileNotFoundError:
                raise InputError("backbone weights file not found", path=self.backbone_weights) from None
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
            backbone.load_state_dict(state)
        return backbone.cpu().eval()

    def _backbone_width(self) -> int:
        import torch

        with torch.inference_mode():
            out = self.backbone_.eval()(torch.zeros(2, 3, self.crop_size, self.crop_size))
        from radhe.nn.networks import flatten_output

        return int(flatten_output(out).shape[1])

    def _backbone_input(self, x):
        """(n, 1 or 2, s, s) crops → (n, 3, s, s) normalised grey-level images."""
        import torch

        x = x[:, :1].repeat(1, 3, 1, 1)
        if self.backbone_normalize:
            mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
            x = (x - mean) / std
        return x

    def _build_network(self):
        if self.kind == "backbone":
            from radhe.nn.networks import BackboneHead

            return BackboneHead(self.backbone_, self._backbone_width())
        return self._roi_cnn()

    # -------------------------------------------------------------------------------------- train
    def _train(self, X, y, crops, seed):
        import torch
        from torch.nn import functional as F

        from radhe.nn.augment import augment_crops

        device = self._device()
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
        samples, labels = [], []
        for i, crop in enumerate(crops):
            if crop is not None and np.isfinite(y[i]):
                samples.append(crop)
                labels.append(np.full(len(crop), y[i], dtype=np.float32))
        if not samples:
            raise InputError("CNNEmbedder.fit: no case has a non-empty mask and a label to train on")
        data = torch.from_numpy(np.concatenate(samples))
        target = torch.from_numpy(np.concatenate(labels))
        n_pos = float(target.sum())
        n_neg = float(len(target) - n_pos)
        pos_weight = None
        if self.class_weight == "balanced" and n_pos > 0 and n_neg > 0:
            pos_weight = torch.tensor(n_neg / n_pos, device=device)
        net = self._build_network().to(device)

        def epoch_batches(epoch):
            for idx in minibatches(torch.from_numpy(rng.permutation(len(data))), self.batch_size):
                x, t = data[idx], target[idx]
                if self.augment:
                    x = augment_crops(x, generator)
                if self.kind == "backbone":
                    x = self._backbone_input(x)
                yield x.to(device), t.to(device)

        def batch_loss(net, batch):
            x, t = batch
            loss = F.binary_cross_entropy_with_logits(net(x), t, pos_weight=pos_weight)
            return loss, {"loss": loss.detach()}

        self._train_network(net, epoch_batches, batch_loss, history_columns=["epoch", "loss", "seconds"])

    # ---------------------------------------------------------------------------------- transform
    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """One row of ``cnn__<i>`` features per case of ``X`` (same index); NaN where the mask is empty."""
        check_is_fitted(self, "n_features_out_")
        check_frame(X, (self.image_column, self.mask_column), "CNNEmbedder.transform")
        if self.kind == "unet_bottleneck":
            return self._bottleneck_features(X)
        return self._features_from_crops(X, self._roi_crops(X, self.mask_column))

    def _features_from_crops(self, X, crops) -> pd.DataFrame:
        import torch

        out = np.full((len(X), self.n_features_out_), np.nan, dtype=np.float64)
        with runtime.torch_runtime(self._threads(), None, deterministic=False):
            net = self._network()
            device = self._net_device
            with torch.inference_mode():
                for i, crop in enumerate(crops):
                    if crop is None:
                        continue
                    x = torch.from_numpy(crop)
                    if self.kind == "backbone":
                        x = self._backbone_input(x)
                    emb = net.embed(x.to(device)).float().cpu().numpy()
                    out[i] = emb.mean(axis=0)
        return self._frame(out, X)

    def _frame(self, values, X) -> pd.DataFrame:
        return pd.DataFrame(values, index=X.index, columns=self.feature_names_out_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self._needs_label() if self.kind in _KINDS else False
        return tags

    # ---------------------------------------------------------------------------------- data prep
    def _bottleneck_features(self, X, *, record: bool = False) -> pd.DataFrame:
        out = np.full((len(X), self.n_features_out_), np.nan, dtype=np.float64)
        failures = []
        with runtime.torch_runtime(self._threads(), None, deterministic=False):
            for i, row in enumerate(X.to_dict("records")):
                case, problem = self._load_roi_case(row, self.mask_column)
                features = None if case is None else self.segmenter_.region_features(case)
                if features is None:
                    failures.append(self._record_failure(row["case_id"], problem or "mask vanishes at the bottleneck"))
                    continue
                out[i] = features
        if record:  # fit_transform only: transform never changes fitted state
            self.failures_ = pd.DataFrame(failures, columns=["case_id", "problem"])
        self._warn_failures(failures)
        return self._frame(out, X)
