"""`NCCTMarkerClassifier`: NCCT haematoma-expansion markers read from the CT by a wavelet CNN.

Ohkita & Hirano classify four NCCT markers of haematoma expansion — hypodensity, irregular
margin, blend sign, fluid level (Boulouis' classes) — as a *multi-label* problem (a haematoma can
show several): one sigmoid output per marker and a weighted binary cross-entropy whose positive
term of marker ``c`` is weighted by ``negatives(c) / positives(c)`` of the training data. Their
classifier is a CNN whose pooling layers are Haar-wavelet transforms (keeping the texture that
max pooling discards), fed with the haematoma region and, optionally, the features of a frozen
segmentation U-Net's encoder.

:class:`NCCTMarkerClassifier` does this on ROI crops of the haematoma (the largest-area slice and
``n_slices`` slices on each side; :func:`radhe.nn.slices.roi_crops`), every slice one training
sample labelled with its case's markers. Its targets are the manifest's marker columns, so it
also works as a feature branch of an expansion model: ``transform`` returns the predicted marker
probabilities as ``marker__<label>`` columns (see ``pipelines/ohkita.py``). The slice-level methods
(:meth:`~NCCTMarkerClassifier.slice_samples`, :meth:`~NCCTMarkerClassifier.fit_slices`,
:meth:`~NCCTMarkerClassifier.predict_slices_proba`) train and score on slices directly, e.g. to
compare patient-level with slice-random splits.

torch is imported only when a network is trained or run.
"""

from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from radhe._checks import check_frame
from radhe._compat import HasMethods, StrOptions
from radhe.constants import MARKER_LABELS
from radhe.errors import ConfigurationError, InputError, InputWarning
from radhe.nn import runtime
from radhe.nn import slices as S
from radhe.nn.base import RoiCNNEstimator, torch_estimator
from radhe.nn.training import minibatches

__all__ = ["NCCTMarkerClassifier", "MARKER_LABELS", "marker_pos_weight", "per_label_auc"]



def marker_pos_weight(targets: np.ndarray) -> np.ndarray:
    """Per-label weight of the positive term: negatives / positives (1 for a label without positives).

    ``targets`` is ``(n, n_labels)`` with 0/1 and NaN (unknown, not counted).
    """
    targets = np.asarray(targets, dtype=float)
    pos = np.nansum(targets == 1, axis=0).astype(float)
    neg = np.nansum(targets == 0, axis=0).astype(float)
    return np.where((pos > 0) & (neg > 0), neg / np.maximum(pos, 1), 1.0)


@torch_estimator
class NCCTMarkerClassifier(RoiCNNEstimator, TransformerMixin, BaseEstimator):
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
    [shared: base_channels, depth, n_features, pooling, mask_channel]
        (Ohkita: Haar-wavelet pooling; max pooling is their plain VGG-like baseline; the mask channel is
        their "+ mask" variant.)
    [shared: crop_size, roi_mm, n_slices, window]
    [shared: epochs, batch_size, learning_rate, weight_decay, dropout]
    pos_weight : "balanced" or None, default "balanced"
        "balanced": each label's positive term weighted by negatives / positives of the training
        slices (Ohkita's weighted BCE); None: plain BCE.
    [shared: augment, image_column, mask_column, hu_check]
        (``mask_column`` defines the ROI at prediction: a segmenter's ``mask_pred`` inside a pipeline.)
    train_mask_column : str or None, default None
        Mask defining the ROI in ``fit``; None: ``mask_column``. Ohkita train on reference masks
        and predict on the segmentation model's masks: ``mask_column="mask_pred"``,
        ``train_mask_column="mask"``.
    [shared: device, n_threads, random_state, verbose]

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
        Training cases without a usable ROI (no or empty mask), left out of training. Cases given
        NaN probabilities by ``predict_proba``/``transform`` are named in an
        :class:`~radhe.errors.InputWarning` (prediction never changes fitted state).
    feature_names_out_ : list of str
        ``marker__<label>``.

    Notes
    -----
    ``fit(X, y)`` ignores ``y``: the targets are ``X[labels]``, so the estimator can sit in a
    haematoma-expansion pipeline whose ``y`` is the expansion label.
    """

    _own_parameter_constraints = {
        "labels": [str, tuple, list],
        "pos_weight": [StrOptions({"balanced"}), None],
        "segmenter": [HasMethods(["fit", "transform"]), None],
        "train_mask_column": [str, None],
    }

    _nan_outputs = "marker probabilities"

    labels: object = dataclasses.field(default=MARKER_LABELS, kw_only=False)
    segmenter: object = None
    pooling: str = "haar"
    dropout: float = 0.2
    pos_weight: str | None = "balanced"
    train_mask_column: str | None = None

    # ------------------------------------------------------------------------------------- checks
    def _check_params(self) -> list[str]:
        self._check_shared_parameters()
        labels = [self.labels] if isinstance(self.labels, str) else list(self.labels)
        if not labels:
            raise ConfigurationError("labels must name at least one marker column")
        if len(set(labels)) != len(labels):
            raise ConfigurationError(f"labels must be distinct, got {labels}")
        if self.pos_weight not in ("balanced", None):
            raise ConfigurationError(f"pos_weight must be 'balanced' or None, got {self.pos_weight!r}")
        return labels

    # -------------------------------------------------------------------------------------- data
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
        start = time.perf_counter()
        seed = runtime.seed_from(self.random_state)
        targets = self._targets(X, labels)
        self.labels_ = labels
        self.unet_ = None
        if self.segmenter is not None:
            from radhe.nn.embedder import CNNEmbedder

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
        crops = self._roi_crops(X, train_mask, record=True)
        data, _, slice_targets, slice_extra = S.slice_samples(crops, targets, extra)
        if data is None:
            raise InputError("NCCTMarkerClassifier.fit: no case has a non-empty mask to train on")
        self._train_slices(data, slice_targets, slice_extra if extra.shape[1] else None, seed)
        self.feature_names_out_ = [f"marker__{label}" for label in labels]
        self.fit_time_ = time.perf_counter() - start
        return self

    # ----------------------------------------------------------------------------- slice level
    def slice_samples(self, X: pd.DataFrame, mask_column: str | None = None):
        """The ROI slice samples of ``X``'s cases, each labelled with its case's markers.

        Parameters
        ----------
        X : pandas.DataFrame
            Manifest with the image, mask and marker columns.
        mask_column : str, optional
            Mask defining the ROI; default ``train_mask_column`` (else ``mask_column``).

        Returns
        -------
        data : ndarray ``(n_slices, c, crop_size, crop_size)`` float32, or None when no case has a mask
        slice_case : ndarray ``(n_slices,)``
            Position in ``X`` of each slice's case (for patient-level splits).
        targets : ndarray ``(n_slices, n_labels)``
            0/1, NaN where the case's marker is unknown.
        """
        labels = self._check_params()
        mask_column = mask_column or self.train_mask_column or self.mask_column
        check_frame(X, (self.image_column, mask_column), "NCCTMarkerClassifier.slice_samples")
        targets = self._targets(X, labels)
        data, slice_case, slice_targets = S.slice_samples(self._roi_crops(X, mask_column), targets)
        return data, slice_case, slice_targets

    def fit_slices(self, data: np.ndarray, targets: np.ndarray):
        """Train the wavelet CNN on slice samples (from :meth:`slice_samples`) instead of on cases.

        Parameters
        ----------
        data : ndarray ``(n, c, crop_size, crop_size)``
        targets : ndarray ``(n, n_labels)``
            0/1 per label, NaN for unknown (left out of the loss).

        Returns
        -------
        self
            Fitted without the U-Net features; :meth:`predict_slices_proba` scores slices.
        """
        labels = self._check_params()
        targets = np.asarray(targets, dtype=float)
        if targets.ndim != 2 or targets.shape[1] != len(labels) or len(targets) != len(data):
            raise InputError(f"NCCTMarkerClassifier.fit_slices: targets must be ({len(data)}, {len(labels)}), "
                             f"got {targets.shape}")
        start = time.perf_counter()
        self.labels_ = labels
        self.unet_ = None
        self._train_slices(np.asarray(data), targets, None, runtime.seed_from(self.random_state))
        self.feature_names_out_ = [f"marker__{label}" for label in labels]
        self.fit_time_ = time.perf_counter() - start
        return self

    def _train_slices(self, data: np.ndarray, targets: np.ndarray, extra: np.ndarray | None, seed: int) -> None:
        """Train the network on slice samples: ``data`` (n, c, s, s), ``targets`` (n, L) 0/1/NaN."""
        import torch
        from torch.nn import functional as F

        from radhe.nn.augment import augment_crops

        n_labels = targets.shape[1]
        n_extra = 0 if extra is None else int(extra.shape[1])
        self.pos_weight_ = marker_pos_weight(targets) if self.pos_weight == "balanced" else np.ones(n_labels)
        self.n_extra_ = n_extra
        device = self._device()
        rng = np.random.default_rng(seed)
        with runtime.torch_runtime(self._threads(), seed):
            generator = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
            net = self._build_network().to(device)
            x_all = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
            valid_all = torch.from_numpy(np.isfinite(targets).astype(np.float32))
            t_all = torch.from_numpy(np.nan_to_num(targets, nan=0.0).astype(np.float32))
            e_all = torch.from_numpy(extra.astype(np.float32)) if n_extra else None
            pos_weight = torch.tensor(self.pos_weight_, dtype=torch.float32, device=device)

            def epoch_batches(epoch):
                for idx in minibatches(torch.from_numpy(rng.permutation(len(x_all))), self.batch_size):
                    x = x_all[idx]
                    if self.augment:
                        x = augment_crops(x, generator)
                    e = e_all[idx].to(device) if e_all is not None else None
                    yield x.to(device), e, t_all[idx].to(device), valid_all[idx].to(device)

            def batch_loss(net, batch):
                x, e, t, valid = batch
                loss = F.binary_cross_entropy_with_logits(net(x, e), t, weight=valid, pos_weight=pos_weight,
                                                          reduction="sum")
                loss = loss / valid.sum().clamp(min=1.0)
                return loss, {"loss": loss.detach()}

            self._train_network(net, epoch_batches, batch_loss, history_columns=["epoch", "loss", "seconds"])

    def _build_network(self):
        from radhe.nn.networks import MarkerNet

        return MarkerNet(self._roi_cnn(dropout=0.0), self.n_extra_, len(self.pos_weight_), self.dropout)

    def predict_slices_proba(self, data: np.ndarray, extra: np.ndarray | None = None, batch: int = 64) -> np.ndarray:
        """Sigmoid probabilities ``(n, n_labels)`` of slice samples (``extra``: per-slice U-Net features)."""
        import torch

        check_is_fitted(self, "model_state_")
        out = []
        with runtime.torch_runtime(self._threads(), None, deterministic=False), torch.inference_mode():
            net = self._network()
            device = self._net_device
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
        crops = self._roi_crops(X, self.mask_column)
        extra = self._unet_features(X, self.mask_column)
        out = np.full((len(X), len(self.labels_)), np.nan)
        data, slice_case, slice_extra = S.slice_samples(crops, extra)
        if data is not None:
            proba = self.predict_slices_proba(data, slice_extra)
            for i in np.unique(slice_case):
                out[i] = proba[slice_case == i].mean(axis=0)
        return out

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """0/1 markers ``(n_cases, n_labels)`` at probability 0.5 (−1 where the probability is NaN)."""
        proba = self.predict_proba(X)
        return np.where(np.isnan(proba), -1, proba >= 0.5).astype(int)

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Marker probabilities as features: columns ``marker__<label>``, X's index."""
        return pd.DataFrame(self.predict_proba(X), index=X.index, columns=self.feature_names_out_)

    def score(self, X: pd.DataFrame, y=None) -> float:
        """Mean over labels of the ROC AUC of the predicted probabilities against ``X[labels_]``.

        Labels with a single class among the scored cases are left out (NaN if all are).
        """
        aucs = per_label_auc(self._targets(X, self.labels_), self.predict_proba(X))
        values = [v for v in aucs if np.isfinite(v)]
        return float(np.mean(values)) if values else float("nan")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
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
