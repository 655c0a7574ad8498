"""`CNNEmbedder`: fixed-length CNN features of the haematoma, learnt inside each training fold.

Three kinds (``kind=``):

``"roi_cnn"``
    A small CNN (:class:`radhe.segmentation.unet.RoiCNN`) trained on the haematoma-expansion label
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
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from radhe._torch_utils import NetCacheMixin, backward_step, check_frame, check_window, mean_or_nan
from radhe.errors import ConfigurationError, InputError, InputWarning, format_case
from radhe.segmentation import _slices as S

__all__ = ["CNNEmbedder"]

_KINDS = ("roi_cnn", "unet_bottleneck", "backbone")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class CNNEmbedder(NetCacheMixin, TransformerMixin, BaseEstimator):
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
    n_features : int, default 32
        Width of the ROI CNN's embedding layer (``kind="roi_cnn"``).
    base_channels : int, default 8
        ROI CNN channels at full resolution (doubled per block).
    depth : int, default 3
        ROI CNN convolution blocks.
    pooling : {"max", "haar"}, default "max"
        ROI CNN downsampling.
    mask_channel : bool, default True
        Give the ROI CNN the mask as a second input channel.
    crop_size : int, default 64
        ROI crops are resampled to ``crop_size`` × ``crop_size`` pixels (299 for Inception-v3).
    roi_mm : float, default 80
        Side of the square ROI in mm, centred on the haematoma of the largest-area slice; enlarged
        to cover a larger haematoma. A fixed physical size keeps haematoma size visible to the CNN.
    n_slices : int, default 3
        Slices on each side of the largest-area slice.
    window : (float, float), default (0, 80)
        HU window for the crops (``roi_cnn`` and ``backbone``).
    epochs : int, default 30
    batch_size : int, default 32
    learning_rate : float, default 1e-3
    weight_decay : float, default 1e-4
    class_weight : {"balanced", None}, default "balanced"
        "balanced" weights positive samples by ``n_negative / n_positive`` in the loss.
    augment : bool, default True
        Random flips, small rotations/scalings and intensity jitter of the training crops.
    image_column : str, default "image"
    mask_column : str, default "mask"
        Mask the features are computed from; :func:`radhe.make_pipeline` points it at the
        segmenter's predicted-mask column.
    device : str, default "auto"
    n_threads : int or None, default None
        Torch CPU threads while fitting/transforming; None: the CPUs available.
    random_state : int or None, default None
        Seed (None means 0: repeated fits give the same features).
    verbose : bool, default False

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
        ``case_id`` and ``problem`` of cases given NaN features by the last ``fit``/``transform``.
    """

    def __init__(
        self,
        kind: str = "roi_cnn",
        *,
        segmenter=None,
        backbone=None,
        backbone_weights=None,
        finetune_backbone: bool = False,
        backbone_normalize: bool = True,
        n_features: int = 32,
        base_channels: int = 8,
        depth: int = 3,
        pooling: str = "max",
        mask_channel: bool = True,
        crop_size: int = 64,
        roi_mm: float = 80.0,
        n_slices: int = 3,
        window: tuple[float, float] = (0.0, 80.0),
        epochs: int = 30,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        class_weight: str | None = "balanced",
        augment: bool = True,
        image_column: str = "image",
        mask_column: str = "mask",
        device: str = "auto",
        n_threads: int | None = None,
        random_state=None,
        verbose: bool = False,
    ):
        self.kind = kind
        self.segmenter = segmenter
        self.backbone = backbone
        self.backbone_weights = backbone_weights
        self.finetune_backbone = finetune_backbone
        self.backbone_normalize = backbone_normalize
        self.n_features = n_features
        self.base_channels = base_channels
        self.depth = depth
        self.pooling = pooling
        self.mask_channel = mask_channel
        self.crop_size = crop_size
        self.roi_mm = roi_mm
        self.n_slices = n_slices
        self.window = window
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.class_weight = class_weight
        self.augment = augment
        self.image_column = image_column
        self.mask_column = mask_column
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------------------------- checks
    def _check_params(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigurationError(f"kind must be one of {_KINDS}, got {self.kind!r}")
        if self.kind == "backbone" and self.backbone is None:
            raise ConfigurationError("kind='backbone' needs backbone= (a torch module or a callable returning one)")
        if self.kind != "backbone" and self.backbone is not None:
            raise ConfigurationError(f"backbone= is only used with kind='backbone' (kind is {self.kind!r})")
        if self.pooling not in ("max", "haar"):
            raise ConfigurationError(f"pooling must be 'max' or 'haar', got {self.pooling!r}")
        if self.class_weight not in ("balanced", None):
            raise ConfigurationError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")
        check_window(self.window)

    def _threads(self) -> int:
        return self.n_threads if self.n_threads is not None else S.default_threads()

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
            return self.transform(X)
        return self._features_from_crops(X, crops)

    def _fit(self, X, y):
        self._check_params()
        check_frame(X, (self.image_column, self.mask_column), "CNNEmbedder.fit")
        start = time.perf_counter()
        seed = S.seed_from(self.random_state)
        self.model_state_, self.segmenter_, self.backbone_ = None, None, None
        self.history_ = pd.DataFrame(columns=["epoch", "loss", "seconds"])
        if self._needs_label():
            if y is None:
                raise ConfigurationError(f"CNNEmbedder(kind={self.kind!r}) is trained on the outcome: fit needs y")
            y = np.asarray(y, dtype=float).ravel()
            if len(y) != len(X):
                raise InputError(f"CNNEmbedder.fit: y has {len(y)} values for {len(X)} manifest rows")

        if self.kind == "unet_bottleneck":
            self.segmenter_ = self._fit_segmenter(X, seed)
            self.n_features_out_ = int(self.segmenter_.base_channels * 2 ** (self.segmenter_.levels - 1))
            self._finish(start)
            return None

        crops = self._crops(X)
        with S.torch_runtime(self._threads(), seed):
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
    def _new_roi_cnn(self):
        from radhe.segmentation.unet import RoiCNN

        return RoiCNN(in_channels=2 if self.mask_channel else 1, base_channels=self.base_channels, depth=self.depth,
                      n_features=self.n_features, pooling=self.pooling)

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
        return int(_flatten_output(out).shape[1])

    def _backbone_input(self, x):
        """(n, 1 or 2, s, s) crops → (n, 3, s, s) normalised grey-level images."""
        import torch

        x = x[:, :1].repeat(1, 3, 1, 1)
        if self.backbone_normalize:
            mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
            x = (x - mean) / std
        return x

    def _network(self):
        """The embedding network in eval mode (built once per fitted estimator, not pickled)."""
        net = getattr(self, "_net", None)
        if net is not None:
            return net
        if self.kind == "backbone":
            net = _BackboneHead(self.backbone_, self._backbone_width())
            if self.model_state_ is not None:
                net.load_state_dict(self.model_state_)
        else:
            net = self._new_roi_cnn()
            net.load_state_dict(self.model_state_)
        self._net = net.eval().to(S.resolve_device(self.device))
        return self._net

    # -------------------------------------------------------------------------------------- train
    def _train(self, X, y, crops, seed):
        import torch
        from torch.nn import functional as F

        device = S.resolve_device(self.device)
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
        if self.kind == "backbone":
            net = _BackboneHead(self.backbone_, self._backbone_width()).to(device)
        else:
            net = self._new_roi_cnn().to(device)
        optimizer = torch.optim.AdamW(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        history = []
        for epoch in range(1, max(1, int(self.epochs)) + 1):
            t0 = time.perf_counter()
            net.train()
            order = torch.from_numpy(rng.permutation(len(data)))
            losses = []
            for b in range(0, len(order), self.batch_size):
                idx = order[b:b + self.batch_size]
                if len(idx) < 2:
                    continue
                x, t = data[idx], target[idx]
                if self.augment:
                    x = _augment(x, generator)
                if self.kind == "backbone":
                    x = self._backbone_input(x)
                x, t = x.to(device), t.to(device)
                loss = F.binary_cross_entropy_with_logits(net(x), t, pos_weight=pos_weight)
                backward_step(optimizer, loss)
                losses.append(float(loss.detach()))
            history.append({"epoch": epoch, "loss": mean_or_nan(losses), "seconds": time.perf_counter() - t0})
            if self.verbose:
                print(f"[CNNEmbedder] epoch {epoch:3d}  loss {history[-1]['loss']:.4f}", flush=True)
        self.history_ = pd.DataFrame(history)
        self.model_state_ = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}

    # ---------------------------------------------------------------------------------- transform
    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """One row of ``cnn__<i>`` features per case of ``X`` (same index); NaN where the mask is empty."""
        check_is_fitted(self, "n_features_out_")
        check_frame(X, (self.image_column, self.mask_column), "CNNEmbedder.transform")
        if self.kind == "unet_bottleneck":
            return self._bottleneck_features(X)
        return self._features_from_crops(X, self._crops(X))

    def _features_from_crops(self, X, crops) -> pd.DataFrame:
        import torch

        out = np.full((len(X), self.n_features_out_), np.nan, dtype=np.float64)
        with S.torch_runtime(self._threads(), None, deterministic=False):
            net = self._network()
            device = S.resolve_device(self.device)
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

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "n_features_out_")
        return np.asarray(self.feature_names_out_, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.target_tags.required = self._needs_label() if self.kind in _KINDS else False
        return tags

    # ---------------------------------------------------------------------------------- data prep
    def _load(self, row):
        case_id = row["case_id"]
        mask_path = row[self.mask_column]
        if S.is_missing(mask_path):
            return None, f"no '{self.mask_column}' path"
        case = S.load_case(row[self.image_column], mask_path, case_id=case_id)
        if not case.mask.any():
            return None, f"empty mask '{mask_path}'"
        return case, None

    def _crops(self, X) -> list:
        """Per case an ``(n, c, crop_size, crop_size)`` float32 array of ROI crops, or None (recorded)."""
        crops, failures = [], []
        for row in X.to_dict("records"):
            case, problem = self._load(row)
            if case is None:
                crops.append(None)
                failures.append(self._failure(row["case_id"], problem))
                continue
            crops.append(roi_crops(case, window_hu=tuple(self.window), n_slices=self.n_slices,
                                   roi_mm=self.roi_mm, size=self.crop_size, mask_channel=self.mask_channel))
        self.failures_ = pd.DataFrame(failures, columns=["case_id", "problem"])
        return crops

    def _failure(self, case_id, problem):
        warnings.warn(f"{format_case(case_id)}: {problem}; its CNN features are NaN", InputWarning, stacklevel=4)
        return {"case_id": str(case_id), "problem": problem}

    def _bottleneck_features(self, X) -> pd.DataFrame:
        import torch
        from torch.nn import functional as F

        seg = self.segmenter_
        out = np.full((len(X), self.n_features_out_), np.nan, dtype=np.float64)
        failures = []
        with S.torch_runtime(self._threads(), None, deterministic=False):
            net = seg._network()
            device = seg._net_device
            for i, row in enumerate(X.to_dict("records")):
                case, problem = self._load(row)
                if case is None:
                    failures.append(self._failure(row["case_id"], problem))
                    continue
                image, _ = seg._prepared(case)
                mask, _ = S.to_network_grid(case.mask.astype(np.float32), seg.input_size, seg._multiple)
                zs = np.flatnonzero(mask.reshape(len(mask), -1).max(axis=1) > 0)
                x = torch.from_numpy(S.stack_context(image, zs, seg.context).astype(np.float32)).to(device)
                with torch.inference_mode():
                    deep = net.encode(x).float()
                    weight = F.adaptive_avg_pool2d(torch.from_numpy(mask[zs][:, None]).to(device),
                                                   deep.shape[-2:])
                    total = weight.sum()
                    if float(total) <= 0:
                        failures.append(self._failure(row["case_id"], "mask vanishes at the bottleneck"))
                        continue
                    out[i] = ((deep * weight).sum(dim=(0, 2, 3)) / total).cpu().numpy()
        self.failures_ = pd.DataFrame(failures, columns=["case_id", "problem"])
        return self._frame(out, X)


class _BackboneHead:
    """A user backbone plus a linear head; ``embed`` gives the backbone's (flattened) output."""

    def __new__(cls, backbone, width):
        import torch

        class BackboneHead(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = backbone
                self.head = torch.nn.Linear(width, 1)

            def embed(self, x):
                return _flatten_output(self.backbone(x))

            def forward(self, x):
                return self.head(self.embed(x)).squeeze(1)

        return BackboneHead()


def _flatten_output(out):
    import torch

    if isinstance(out, (tuple, list)):  # e.g. Inception-v3's (logits, aux_logits) in training mode
        out = out[0]
    if hasattr(out, "logits"):
        out = out.logits
    return torch.flatten(out, 1)


def _augment(x, generator):
    """Flips, small rotations/scalings (all channels) and intensity jitter (channel 0) of a crop batch."""
    import torch

    x, _ = S.augment_batch(x, None, generator, intensity=0.0)
    gain = 1 + (torch.rand(len(x), 1, 1, generator=generator) * 2 - 1) * 0.1
    x = x.clone()
    x[:, 0] = x[:, 0] * gain
    return x


def roi_crops(case: S.Case, *, window_hu, n_slices: int, roi_mm: float, size: int, mask_channel: bool) -> np.ndarray:
    """ROI crops of the largest-area slice and ``n_slices`` on each side, ``(n, c, size, size)`` float32.

    The square ROI (side ``roi_mm``, or the haematoma's extent on these slices if larger, plus 10 %)
    is centred on the haematoma's bounding box on the largest-area slice and resampled to ``size``
    pixels; channel 0 is the windowed CT, channel 1 (``mask_channel``) the mask.
    """
    import torch
    from torch.nn import functional as F

    mask = case.mask.astype(bool)
    areas = mask.reshape(len(mask), -1).sum(axis=1)
    z0 = int(np.argmax(areas))
    zs = np.arange(max(0, z0 - n_slices), min(len(mask), z0 + n_slices + 1))
    spacing_x, spacing_y = case.reference.GetSpacing()[:2]
    y0, y1, x0, x1 = S.bbox_2d(mask[z0])
    cy, cx = (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2
    ys, xs = np.nonzero(mask[zs].any(axis=0))
    extent_mm = max((ys.max() - ys.min() + 1) * spacing_y, (xs.max() - xs.min() + 1) * spacing_x) * 1.1
    side_mm = max(float(roi_mm), extent_mm)
    h, w = mask.shape[1:]
    side_y, side_x = side_mm / spacing_y, side_mm / spacing_x
    theta = torch.tensor([[side_x / w, 0.0, (2 * cx + 1) / w - 1], [0.0, side_y / h, (2 * cy + 1) / h - 1]],
                         dtype=torch.float32)
    channels = [S.window(case.hu[zs], *window_hu)]
    if mask_channel:
        channels.append(mask[zs].astype(np.float32))
    x = torch.from_numpy(np.stack(channels, axis=1))
    grid = F.affine_grid(theta.expand(len(zs), 2, 3), [len(zs), x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).numpy()
