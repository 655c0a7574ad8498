"""`TwoOutputUNetClassifier`: one U-Net, a segmentation head and an expansion head (Zhong et al. 2021).

Zhong et al. trained a single network on the CT alone with two outputs: the U-Net's decoder
segments the haematoma, and the deepest layer of the U (the "bridge", the most aggregated context)
feeds a binary classifier of early haematoma expansion. The segmentation task shapes the shared
encoder, the classification head reads it. No clinical variable is an input. Here the expansion
head pools the bottleneck over the whole slice and over the haematoma the segmentation output
finds (see :class:`TwoOutputUNetClassifier`).

Here the network is 2-D (:class:`radhe.nn.networks.TwoOutputUNet`, slices resized to
``input_size``), trained on the slices holding haematoma — segmentation loss (BCE + soft Dice) on
every sampled slice, class-weighted BCE of the case's expansion label on haematoma slices — and a
case's probability is the mean expansion logit of the ``2 * n_slices + 1`` slices with the largest
*predicted* haematoma area, so prediction needs only the CT.
"""

from __future__ import annotations

import time
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from radhe._checks import check_frame
from radhe._compat import Interval, StrOptions
from radhe.errors import ConfigurationError, InputError
from radhe.nn import runtime
from radhe.nn import slices as S
from radhe.nn.base import UNetEstimator, torch_estimator
from radhe.nn.training import minibatches, soft_dice_loss

__all__ = ["TwoOutputUNetClassifier"]


@torch_estimator
class TwoOutputUNetClassifier(UNetEstimator, ClassifierMixin, BaseEstimator):
    """Haematoma-expansion classifier: a U-Net with a segmentation and a classification output.

    Parameters
    ----------
    [shared: base_channels, levels, dilation]
        (``dilation=1``: Zhong's plain U-Net.)
    input_size : int, default 128
        Slices are resized to ``input_size`` × ``input_size`` (Zhong: 256 × 256 × 32 volumes).
    [shared: window]
    skull_strip : bool, default True
        Zero everything outside the intracranial space first (Zhong skull-stripped the scans).
    [shared: epochs, batch_size]
    learning_rate : float, default 3e-3
        AdamW learning rate, cosine-annealed to a tenth over ``epochs``.
    [shared: weight_decay]
    segmentation_weight : float, default 1.0
        Weight of the segmentation loss relative to the classification loss.
    negative_ratio : float, default 0.25
        Slices without haematoma sampled per epoch (segmentation loss only), as a multiple of the
        haematoma slices.
    class_weight : "balanced" or None, default "balanced"
        "balanced": positive slices weighted by negatives / positives in the classification loss.
    [shared: dropout, n_slices, augment]
        (A case is scored on the ``2 * n_slices + 1`` slices of largest predicted haematoma area; Zhong
        augmented by 3-D rotation, translation and scaling.)
    [shared: image_column, mask_column, hu_check]
        (The mask is needed only by ``fit``.)
    [shared: device, n_threads, random_state, verbose]

    Attributes
    ----------
    classes_ : ndarray, ``[0, 1]``
    model_state_ : dict
        Trained weights.
    history_ : pandas.DataFrame
        Per epoch: ``segmentation_loss``, ``classification_loss``, ``seconds``.
    """

    _own_parameter_constraints = {
        "input_size": [Interval(Integral, 8, None, closed="left")],
        "negative_ratio": [Interval(Real, 0, None, closed="left")],
        "segmentation_weight": [Interval(Real, 0, None, closed="left")],
        "skull_strip": ["boolean"],
        "class_weight": [StrOptions({"balanced"}), None],
    }

    base_channels: int = 8
    dilation: int = 1
    input_size: int = 128
    skull_strip: bool = True
    epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 3e-3
    segmentation_weight: float = 1.0
    negative_ratio: float = 0.25
    class_weight: str | None = "balanced"
    dropout: float = 0.3
    n_slices: int = 3

    # ------------------------------------------------------------------------------------ helpers
    def _check_params(self) -> None:
        self._check_shared_parameters()
        if self.input_size is None or self.input_size < 2 ** (self.levels - 1):
            raise ConfigurationError(f"input_size must be an int >= {2 ** (self.levels - 1)}, got {self.input_size!r}")
        if self.segmentation_weight < 0 or self.negative_ratio < 0:
            raise ConfigurationError("segmentation_weight and negative_ratio must be >= 0")

    def _grid(self, case):
        image = S.preprocess(case, tuple(self.window), self.skull_strip)
        grid, _ = S.to_network_grid(image, self.input_size, 2 ** (self.levels - 1))
        return grid.astype(np.float32)

    def _build_network(self):
        from radhe.nn.networks import TwoOutputUNet

        return TwoOutputUNet(1, self.base_channels, self.levels, self.dilation, self.dropout)

    # ---------------------------------------------------------------------------------------- fit
    def fit(self, X: pd.DataFrame, y):
        """Train on the manifest ``X`` (CT and reference mask of every case) and labels ``y`` (0/1)."""
        import torch
        from torch.nn import functional as F

        from radhe._checks import check_binary
        from radhe.nn.augment import augment_batch

        self._check_params()
        check_frame(X, (self.image_column, self.mask_column), "TwoOutputUNetClassifier.fit")
        y = check_binary(y)
        if y.size != len(X):
            raise InputError(f"TwoOutputUNetClassifier.fit: y has {y.size} labels for {len(X)} manifest rows")
        if np.unique(y).size < 2:
            raise InputError("TwoOutputUNetClassifier.fit needs both classes in y")
        start = time.perf_counter()
        seed = runtime.seed_from(self.random_state)
        rng = np.random.default_rng(seed)
        images, masks = [], []
        for row in X.to_dict("records"):
            case = S.load_case(row[self.image_column], row[self.mask_column], case_id=row["case_id"],
                               require_mask=True, hu_check=self.hu_check)
            images.append(self._grid(case))
            mask, _ = S.to_network_grid(case.mask, self.input_size, 2 ** (self.levels - 1), is_mask=True)
            masks.append(mask.astype(np.float32))
        positives = [(c, z) for c in range(len(images)) for z in np.flatnonzero(masks[c].any(axis=(1, 2)))]
        negatives = [(c, z) for c in range(len(images)) for z in np.flatnonzero(~masks[c].any(axis=(1, 2)))]
        if not positives:
            raise InputError("TwoOutputUNetClassifier.fit: no case has haematoma in its mask")
        slice_y = np.array([y[c] for c, _ in positives], dtype=float)
        n_pos, n_neg = slice_y.sum(), len(slice_y) - slice_y.sum()
        pw = n_neg / n_pos if self.class_weight == "balanced" and n_pos > 0 and n_neg > 0 else 1.0
        device = self._device()
        with runtime.torch_runtime(self._threads(), seed):
            generator = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
            net = self._build_network().to(device)
            pos_weight = torch.tensor(pw, dtype=torch.float32, device=device)

            def epoch_batches(epoch):
                n_neg_slices = min(len(negatives), int(round(self.negative_ratio * len(positives))))
                chosen = [(c, z, True) for c, z in positives] + [
                    (*negatives[i], False) for i in rng.choice(len(negatives), n_neg_slices, replace=False)]
                for chunk in minibatches(rng.permutation(len(chosen)), self.batch_size):
                    batch = [chosen[i] for i in chunk]
                    x = torch.from_numpy(np.stack([images[c][z][None] for c, z, _ in batch]))
                    t = torch.from_numpy(np.stack([masks[c][z][None] for c, z, _ in batch]))
                    has = torch.tensor([h for _, _, h in batch], dtype=torch.bool)
                    label = torch.tensor([float(y[c]) for c, _, _ in batch])
                    if self.augment:
                        x, t = augment_batch(x, t, generator)
                    yield x.to(device), t.to(device), has.to(device), label.to(device)

            def batch_loss(net, batch):
                x, t, has, label = batch
                seg_logits, cls_logit = net(x)
                seg_loss = F.binary_cross_entropy_with_logits(seg_logits, t) + soft_dice_loss(seg_logits, t)
                loss = self.segmentation_weight * seg_loss
                logs = {"segmentation_loss": seg_loss.detach()}
                if bool(has.any()):
                    cls_loss = F.binary_cross_entropy_with_logits(cls_logit[has], label[has], pos_weight=pos_weight)
                    loss = loss + cls_loss
                    logs["classification_loss"] = cls_loss.detach()
                return loss, logs

            self._train_network(net, epoch_batches, batch_loss, lr_schedule="cosine",
                                history_columns=["epoch", "segmentation_loss", "classification_loss", "seconds"])
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        self._net = None
        self.fit_time_ = time.perf_counter() - start
        return self

    # ----------------------------------------------------------------------------------- predict
    def _case_outputs(self, image_path, case_id):
        """Per-slice segmentation probabilities ``(z, s, s)`` and expansion logits ``(z,)`` of one case."""
        import torch

        grid = self._grid(S.load_case(image_path, None, case_id=case_id, hu_check=self.hu_check))
        net = self._network()
        device = self._net_device
        probs, logits = [], []
        with torch.inference_mode():
            for b in range(0, len(grid), 32):
                x = torch.from_numpy(grid[b:b + 32][:, None]).to(device)
                seg, cls = net(x)
                probs.append(torch.sigmoid(seg.float())[:, 0].cpu().numpy())
                logits.append(cls.float().cpu().numpy())
        return np.concatenate(probs), np.concatenate(logits)

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Expansion logit of each case: the mean over its slices of largest predicted haematoma area."""
        return self._scores_and_slices(X)[0]

    def selected_slices(self, X: pd.DataFrame) -> pd.DataFrame:
        """The slices whose logits :meth:`decision_function` averages, per case of ``X`` (same index).

        Returns
        -------
        pandas.DataFrame
            ``case_id``, ``slices`` (axial slice indices, counted upwards from the lowest slice: the
            network's canonical orientation, :mod:`radhe.io.orientation`; for a file stored slices
            upwards along its first axis, as DICOM series and radhe's cohort are, the file's own slice
            numbers) and ``predicted_area_px`` (predicted haematoma pixels on each).
        """
        return self._scores_and_slices(X)[1]

    def _scores_and_slices(self, X: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
        check_is_fitted(self, "model_state_")
        check_frame(X, (self.image_column,), "TwoOutputUNetClassifier")
        k = 2 * int(self.n_slices) + 1
        scores, records = [], []
        with runtime.torch_runtime(self._threads(), None, deterministic=False):
            for case_id, image in zip(X["case_id"], X[self.image_column], strict=True):
                prob, logit = self._case_outputs(image, case_id)
                area = (prob >= 0.5).sum(axis=(1, 2)).astype(float)
                # slices with no predicted haematoma rank by their peak probability instead
                rank = np.where(area > 0, area + 1.0, prob.max(axis=(1, 2)))
                chosen = np.sort(np.argsort(-rank, kind="stable")[:k])
                scores.append(float(logit[chosen].mean()))
                records.append({"case_id": str(case_id), "slices": chosen.tolist(),
                                "predicted_area_px": area[chosen].astype(int).tolist()})
        return np.asarray(scores), pd.DataFrame(records, index=X.index)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """``(n_cases, 2)`` probabilities of no expansion / expansion."""
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def predict_masks(self, X: pd.DataFrame) -> list[np.ndarray]:
        """The segmentation output: a ``(z, y, x)`` uint8 mask per case on the image's own grid."""
        check_is_fitted(self, "model_state_")
        out = []
        with runtime.torch_runtime(self._threads(), None, deterministic=False):
            for case_id, image in zip(X["case_id"], X[self.image_column], strict=True):
                case = S.load_case(image, None, case_id=case_id, hu_check=self.hu_check)
                prep = S.preprocess(case, tuple(self.window), self.skull_strip)
                _, undo = S.to_network_grid(prep, self.input_size, 2 ** (self.levels - 1))
                prob, _ = self._case_outputs(image, case_id)
                out.append(case.to_native((undo(prob) >= 0.5).astype(np.uint8)))
        return out

    def dice(self, X: pd.DataFrame) -> pd.Series:
        """Dice of the segmentation output against ``X[mask_column]``, per case (index of X)."""
        from radhe.segmentation.metrics import dice_score

        check_frame(X, (self.image_column, self.mask_column), "TwoOutputUNetClassifier.dice")
        values = []
        for (case_id, mask_path), pred in zip(zip(X["case_id"], X[self.mask_column], strict=True),
                                              self.predict_masks(X), strict=True):
            truth = S.load_case(X.loc[X["case_id"] == case_id, self.image_column].iloc[0], mask_path,
                                case_id=case_id, require_mask=True, hu_check=self.hu_check)
            truth = truth.to_native(truth.mask)
            values.append(dice_score(truth, pred))
        return pd.Series(values, index=X.index, name="dice")

