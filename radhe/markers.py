"""`NCCTMarkerClassifier`: NCCT haematoma-expansion markers read from the CT by a wavelet CNN.

Ohkita & Hirano classify four NCCT markers of haematoma expansion — hypodensity, irregular
margin, blend sign, fluid level (Boulouis' classes) — as a *multi-label* problem (a haematoma can
show several): one sigmoid output per marker and a weighted binary cross-entropy whose positive
term of marker ``c`` is weighted by ``negatives(c) / positives(c)`` of the training data. Their
classifier is a CNN whose pooling layers are Haar-wavelet transforms (keeping the texture that
max pooling discards), fed with the haematoma region and, optionally, the features of a frozen
segmentation U-Net's encoder.

:class:`NCCTMarkerClassifier` does this on ROI crops of the haematoma (the largest-area slice and
``n_slices`` slices on each side; :func:`radhe.features.cnn.roi_crops`), every slice one training
sample labelled with its case's markers. Its targets are the manifest's marker columns, so it
also works as a feature branch of an expansion model: ``transform`` returns the predicted marker
probabilities as ``marker__<label>`` columns (see ``pipelines/ohkita.py``).

torch is imported only when a network is trained or run.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from radhe._torch_utils import NetCacheMixin, backward_step, check_frame, check_window, mean_or_nan
from radhe.errors import ConfigurationError, InputError, InputWarning, format_case

__all__ = ["NCCTMarkerClassifier", "MARKER_LABELS", "marker_pos_weight", "per_label_auc"]

#: Ohkita's four marker classes, as manifest columns.
MARKER_LABELS = ("hypodensity", "irregular_margin", "blend_sign", "fluid_level")


def marker_pos_weight(targets: np.ndarray) -> np.ndarray:
    """Per-label weight of the positive term: negatives / positives (1 for a label without positives).

    ``targets`` is ``(n, n_labels)`` with 0/1 and NaN (unknown, not counted).
    """
    targets = np.asarray(targets, dtype=float)
    pos = np.nansum(targets == 1, axis=0).astype(float)
    neg = np.nansum(targets == 0, axis=0).astype(float)
    return np.where((pos > 0) & (neg > 0), neg / np.maximum(pos, 1), 1.0)


def _marker_net(roi_kwargs: dict, n_extra: int, n_labels: int, dropout: float):
    """Wavelet ROI CNN embedding (+ extra features) → one logit per label."""
    import torch
    from torch import nn

    from radhe.segmentation.unet import RoiCNN

    class MarkerNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.cnn = RoiCNN(**roi_kwargs)
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(self.cnn.n_features + n_extra, n_labels)

        def forward(self, x, extra=None):
            e = self.cnn.embed(x)
            if extra is not None and extra.shape[1]:
                e = torch.cat([e, extra], dim=1)
            return self.head(self.dropout(e))

    return MarkerNet()


class NCCTMarkerClassifier(NetCacheMixin, TransformerMixin, BaseEstimator):
    """Multi-label classifier of NCCT haematoma markers (Ohkita's wavelet CNN), usable as a feature branch.

    Parameters
    ----------
    labels : sequence of str, default :data:`MARKER_LABELS`
        Manifest columns (0/1; missing values are left out of the loss) learnt as targets.
    segmenter : HematomaSegmenter or None, default None
        Ohkita's joint model: a U-Net whose frozen encoder features (the bottleneck averaged over
        the haematoma, :class:`~radhe.features.CNNEmbedder` ``kind="unet_bottleneck"``) are
        concatenated to the wavelet CNN's embedding before the output layer. An unfitted segmenter
        is trained first (stage 1) on ``train_mask_column``'s masks; a fitted one is used as is.
        None: the wavelet CNN alone.
    base_channels : int, default 8
        CNN channels of the first block (doubled per block).
    depth : int, default 3
        Convolution blocks, each followed by 2× pooling.
    n_features : int, default 32
        Width of the CNN embedding.
    pooling : {"haar", "max"}, default "haar"
        Haar-wavelet pooling (Ohkita) or max pooling (a plain VGG-like CNN, their baseline).
    mask_channel : bool, default True
        Give the CNN the haematoma mask as a second input channel (Ohkita's "+ mask" variant
        restricts the input to the haematoma region).
    crop_size : int, default 64
        Crops are resampled to ``crop_size`` × ``crop_size`` pixels.
    roi_mm : float, default 80
        Side of the square ROI (mm) around the haematoma.
    n_slices : int, default 3
        Slices on each side of the largest-area slice.
    window : (float, float), default (0, 80)
        HU window (Ohkita: a = 0, b = 80).
    epochs : int, default 30
    batch_size : int, default 32
    learning_rate : float, default 1e-3
    weight_decay : float, default 1e-4
    dropout : float, default 0.2
    pos_weight : "balanced" or None, default "balanced"
        "balanced": each label's positive term weighted by negatives / positives of the training
        slices (Ohkita's weighted BCE); None: plain BCE.
    augment : bool, default True
        Random flips, small rotations/scalings and intensity jitter of the training crops.
    image_column : str, default "image"
    mask_column : str, default "mask"
        Mask defining the ROI at prediction (a segmenter's ``mask_pred`` inside a pipeline).
    train_mask_column : str or None, default None
        Mask defining the ROI in ``fit``; None: ``mask_column``. Ohkita train on reference masks
        and predict on the segmentation model's masks: ``mask_column="mask_pred"``,
        ``train_mask_column="mask"``.
    device : str, default "auto"
    n_threads : int or None, default None
        Torch CPU threads (restored afterwards); None: the CPUs available.
    random_state : int or None, default None
        Seed (None means 0).
    verbose : bool, default False

    Attributes
    ----------
    labels_ : list of str
    pos_weight_ : ndarray
        The per-label positive weights used in training.
    model_state_ : dict
        Trained network weights.
    unet_ : CNNEmbedder or None
        The frozen U-Net feature extractor (with ``segmenter``).
    history_ : pandas.DataFrame
        Training loss per epoch.
    failures_ : pandas.DataFrame
        Cases given NaN probabilities by the last call (no or empty mask).
    feature_names_out_ : list of str
        ``marker__<label>``.

    Notes
    -----
    ``fit(X, y)`` ignores ``y``: the targets are ``X[labels]``, so the estimator can sit in a
    haematoma-expansion pipeline whose ``y`` is the expansion label.
    """

    def __init__(
        self,
        labels=MARKER_LABELS,
        *,
        segmenter=None,
        base_channels: int = 8,
        depth: int = 3,
        n_features: int = 32,
        pooling: str = "haar",
        mask_channel: bool = True,
        crop_size: int = 64,
        roi_mm: float = 80.0,
        n_slices: int = 3,
        window: tuple[float, float] = (0.0, 80.0),
        epochs: int = 30,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        dropout: float = 0.2,
        pos_weight: str | None = "balanced",
        augment: bool = True,
        image_column: str = "image",
        mask_column: str = "mask",
        train_mask_column: str | None = None,
        device: str = "auto",
        n_threads: int | None = None,
        random_state=None,
        verbose: bool = False,
    ):
        self.labels = labels
        self.segmenter = segmenter
        self.base_channels = base_channels
        self.depth = depth
        self.n_features = n_features
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
        self.dropout = dropout
        self.pos_weight = pos_weight
        self.augment = augment
        self.image_column = image_column
        self.mask_column = mask_column
        self.train_mask_column = train_mask_column
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------------------------- checks
    def _check_params(self) -> list[str]:
        labels = [self.labels] if isinstance(self.labels, str) else list(self.labels)
        if not labels:
            raise ConfigurationError("labels must name at least one marker column")
        if len(set(labels)) != len(labels):
            raise ConfigurationError(f"labels must be distinct, got {labels}")
        if self.pooling not in ("haar", "max"):
            raise ConfigurationError(f"pooling must be 'haar' or 'max', got {self.pooling!r}")
        if self.pos_weight not in ("balanced", None):
            raise ConfigurationError(f"pos_weight must be 'balanced' or None, got {self.pos_weight!r}")
        check_window(self.window)
        for name in ("epochs", "batch_size", "crop_size", "n_features", "base_channels", "depth"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
        if self.n_slices < 0:
            raise ConfigurationError(f"n_slices must be >= 0, got {self.n_slices!r}")
        return labels

    def _threads(self) -> int:
        from radhe.segmentation import _slices as S

        return self.n_threads if self.n_threads is not None else S.default_threads()

    # -------------------------------------------------------------------------------------- data
    def _crops(self, X: pd.DataFrame, mask_column: str) -> list:
        """Per case an ``(n, c, s, s)`` float32 array of ROI crops, or None (recorded in failures_)."""
        from radhe.features.cnn import roi_crops
        from radhe.segmentation import _slices as S

        crops, failures = [], []
        for row in X.to_dict("records"):
            case_id, mask_path = row["case_id"], row[mask_column]
            problem = None
            if S.is_missing(mask_path):
                problem = f"no '{mask_column}' path"
            else:
                case = S.load_case(row[self.image_column], mask_path, case_id=case_id)
                if not case.mask.any():
                    problem = f"empty mask '{mask_path}'"
            if problem is not None:
                warnings.warn(f"{format_case(case_id)}: {problem}; its marker probabilities are NaN", InputWarning,
                              stacklevel=3)
                failures.append({"case_id": str(case_id), "problem": problem})
                crops.append(None)
                continue
            crops.append(roi_crops(case, window_hu=tuple(self.window), n_slices=self.n_slices, roi_mm=self.roi_mm,
                                   size=self.crop_size, mask_channel=self.mask_channel))
        self.failures_ = pd.DataFrame(failures, columns=["case_id", "problem"])
        return crops

    def _targets(self, X: pd.DataFrame, labels: list[str]) -> np.ndarray:
        missing = [c for c in labels if c not in X.columns]
        if missing:
            raise InputError(f"NCCTMarkerClassifier.fit: manifest lacks the marker column(s) {missing}; "
                             f"columns present: {list(X.columns)}")
        try:
            values = X[labels].apply(pd.to_numeric, errors="raise").to_numpy(dtype=float)
        except (TypeError, ValueError):
            raise InputError(f"NCCTMarkerClassifier.fit: marker columns {labels} must be 0/1") from None
        bad = np.isfinite(values) & ~np.isin(values, (0.0, 1.0))
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise InputError(f"marker column '{labels[col]}' holds {values[row, col]!r}; expected 0/1 (or missing)",
                             case_id=X["case_id"].iloc[row])
        return values

    def _unet_features(self, X, mask_column: str) -> np.ndarray:
        """Standardised U-Net encoder features per case (zeros where the mask is unusable)."""
        if getattr(self, "unet_", None) is None:
            return np.zeros((len(X), 0), dtype=np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputWarning)  # the crops step already named such cases
            feats = self.unet_.set_params(mask_column=mask_column).transform(X).to_numpy(dtype=float)
        feats = (feats - self.unet_mean_) / self.unet_scale_
        return np.nan_to_num(feats, nan=0.0).astype(np.float32)

    # ---------------------------------------------------------------------------------------- fit
    def fit(self, X: pd.DataFrame, y=None):
        """Train on the cases of ``X``; targets are ``X[labels]`` (``y`` is ignored, see Notes)."""
        labels = self._check_params()
        train_mask = self.train_mask_column or self.mask_column
        check_frame(X, (self.image_column, train_mask), "NCCTMarkerClassifier.fit")
        from radhe.segmentation import _slices as S

        start = time.perf_counter()
        seed = S.seed_from(self.random_state)
        targets = self._targets(X, labels)
        self.labels_ = labels
        self.unet_ = None
        if self.segmenter is not None:
            from radhe.features.cnn import CNNEmbedder

            self.unet_ = CNNEmbedder(kind="unet_bottleneck", segmenter=self.segmenter, image_column=self.image_column,
                                     mask_column=train_mask, n_threads=self.n_threads, random_state=seed).fit(X)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InputWarning)  # the crops step names such cases
                raw = self.unet_.transform(X).to_numpy(dtype=float)
            known = np.isfinite(raw).all(axis=1)
            self.unet_mean_ = raw[known].mean(axis=0) if known.any() else np.zeros(raw.shape[1])
            sd = raw[known].std(axis=0) if known.any() else np.ones(raw.shape[1])
            self.unet_scale_ = np.where(sd > 0, sd, 1.0)
            extra = np.nan_to_num((raw - self.unet_mean_) / self.unet_scale_, nan=0.0).astype(np.float32)
        else:
            extra = np.zeros((len(X), 0), dtype=np.float32)
        crops = self._crops(X, train_mask)
        data, slice_targets, slice_extra = _stack(crops, targets, extra)
        if data is None:
            raise InputError("NCCTMarkerClassifier.fit: no case has a non-empty mask to train on")
        self._train_slices(data, slice_targets, slice_extra, seed)
        self.feature_names_out_ = [f"marker__{label}" for label in labels]
        self.n_extra_ = int(extra.shape[1])
        self.fit_time_ = time.perf_counter() - start
        return self

    def _train_slices(self, data: np.ndarray, targets: np.ndarray, extra: np.ndarray | None, seed: int) -> None:
        """Train the network on slice samples: ``data`` (n, c, s, s), ``targets`` (n, L) 0/1/NaN."""
        import torch
        from torch.nn import functional as F

        from radhe.features.cnn import _augment
        from radhe.segmentation import _slices as S

        n_labels = targets.shape[1]
        n_extra = 0 if extra is None else int(extra.shape[1])
        self.pos_weight_ = marker_pos_weight(targets) if self.pos_weight == "balanced" else np.ones(n_labels)
        self.n_extra_ = n_extra
        device = S.resolve_device(self.device)
        rng = np.random.default_rng(seed)
        with S.torch_runtime(self._threads(), seed):
            generator = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
            net = self._new_network(n_labels, n_extra).to(device)
            x_all = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
            valid_all = torch.from_numpy(np.isfinite(targets).astype(np.float32))
            t_all = torch.from_numpy(np.nan_to_num(targets, nan=0.0).astype(np.float32))
            e_all = torch.from_numpy(extra.astype(np.float32)) if n_extra else None
            pos_weight = torch.tensor(self.pos_weight_, dtype=torch.float32, device=device)
            optimizer = torch.optim.AdamW(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
            history = []
            for epoch in range(1, int(self.epochs) + 1):
                t0 = time.perf_counter()
                net.train()
                order = torch.from_numpy(rng.permutation(len(x_all)))
                losses = []
                for b in range(0, len(order), self.batch_size):
                    idx = order[b:b + self.batch_size]
                    if len(idx) < 2:  # BatchNorm needs two samples
                        continue
                    x = x_all[idx]
                    if self.augment:
                        x = _augment(x, generator)
                    e = e_all[idx].to(device) if e_all is not None else None
                    logits = net(x.to(device), e)
                    valid = valid_all[idx].to(device)
                    loss = F.binary_cross_entropy_with_logits(logits, t_all[idx].to(device), weight=valid,
                                                              pos_weight=pos_weight, reduction="sum")
                    loss = loss / valid.sum().clamp(min=1.0)
                    backward_step(optimizer, loss)
                    losses.append(float(loss.detach()))
                history.append({"epoch": epoch, "loss": mean_or_nan(losses), "seconds": time.perf_counter() - t0})
                if self.verbose:
                    print(f"[NCCTMarkerClassifier] epoch {epoch:3d}  loss {history[-1]['loss']:.4f}", flush=True)
        self.history_ = pd.DataFrame(history, columns=["epoch", "loss", "seconds"])
        self.model_state_ = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        self._net = None

    def _new_network(self, n_labels: int, n_extra: int):
        roi = dict(in_channels=2 if self.mask_channel else 1, base_channels=self.base_channels, depth=self.depth,
                   n_features=self.n_features, pooling=self.pooling, dropout=0.0)
        return _marker_net(roi, n_extra, n_labels, self.dropout)

    def _network(self):
        net = getattr(self, "_net", None)
        if net is None:
            from radhe.segmentation import _slices as S

            net = self._new_network(len(self.pos_weight_), self.n_extra_)
            net.load_state_dict(self.model_state_)
            self._net = net.eval().to(S.resolve_device(self.device))
        return self._net

    def _predict_slices(self, data: np.ndarray, extra: np.ndarray | None = None, batch: int = 64) -> np.ndarray:
        """Sigmoid probabilities ``(n, L)`` of slice samples."""
        import torch

        from radhe.segmentation import _slices as S

        check_is_fitted(self, "model_state_")
        out = []
        with S.torch_runtime(self._threads(), None, deterministic=False), torch.inference_mode():
            net = self._network()
            device = S.resolve_device(self.device)
            for b in range(0, len(data), batch):
                x = torch.from_numpy(np.ascontiguousarray(data[b:b + batch], dtype=np.float32)).to(device)
                e = None
                if extra is not None and extra.shape[1]:
                    e = torch.from_numpy(extra[b:b + batch].astype(np.float32)).to(device)
                out.append(torch.sigmoid(net(x, e).float()).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.pos_weight_)))

    # ----------------------------------------------------------------------------------- predict
    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probability of each marker, ``(n_cases, n_labels)`` (columns in ``labels_`` order).

        A case's probability is the mean over its slices; NaN for a case without a usable mask
        (an :class:`~radhe.errors.InputWarning` names it).
        """
        check_is_fitted(self, "model_state_")
        check_frame(X, (self.image_column, self.mask_column), "NCCTMarkerClassifier")
        crops = self._crops(X, self.mask_column)
        extra = self._unet_features(X, self.mask_column)
        out = np.full((len(X), len(self.labels_)), np.nan)
        data, _, slice_extra = _stack(crops, np.zeros((len(X), 0)), extra)
        if data is not None:
            proba = self._predict_slices(data, slice_extra)
            start = 0
            for i, crop in enumerate(crops):
                if crop is not None:
                    out[i] = proba[start:start + len(crop)].mean(axis=0)
                    start += len(crop)
        return out

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """0/1 markers ``(n_cases, n_labels)`` at probability 0.5 (−1 where the probability is NaN)."""
        proba = self.predict_proba(X)
        return np.where(np.isnan(proba), -1, proba >= 0.5).astype(int)

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Marker probabilities as features: columns ``marker__<label>``, X's index."""
        return pd.DataFrame(self.predict_proba(X), index=X.index, columns=self.feature_names_out_)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "model_state_")
        return np.asarray(self.feature_names_out_, dtype=object)

    def score(self, X: pd.DataFrame, y=None) -> float:
        """Mean over labels of the ROC AUC of the predicted probabilities against ``X[labels_]``.

        Labels with a single class among the scored cases are left out (NaN if all are).
        """
        aucs = per_label_auc(self._targets(X, self.labels_), self.predict_proba(X))
        values = [v for v in aucs if np.isfinite(v)]
        return float(np.mean(values)) if values else float("nan")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.target_tags.required = False
        return tags


def per_label_auc(targets: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """ROC AUC of each column of ``proba`` against ``targets`` (NaN rows dropped; NaN if one class)."""
    from sklearn.metrics import roc_auc_score

    targets = np.asarray(targets, dtype=float)
    proba = np.asarray(proba, dtype=float)
    out = np.full(targets.shape[1], np.nan)
    for j in range(targets.shape[1]):
        keep = np.isfinite(targets[:, j]) & np.isfinite(proba[:, j])
        t = targets[keep, j]
        if t.size and 0 < t.sum() < t.size:
            out[j] = roc_auc_score(t, proba[keep, j])
    return out


def _stack(crops, targets, extra):
    """Slice samples of the cases with crops: data, per-slice targets, per-slice extra features."""
    data, t, e = [], [], []
    for i, crop in enumerate(crops):
        if crop is None:
            continue
        data.append(crop)
        t.append(np.repeat(targets[i:i + 1], len(crop), axis=0))
        e.append(np.repeat(extra[i:i + 1], len(crop), axis=0))
    if not data:
        return None, None, None
    extra_stack = np.concatenate(e) if extra.shape[1] else None
    return np.concatenate(data), np.concatenate(t), extra_stack
