"""`TwoOutputUNetClassifier`: one U-Net, a segmentation head and an expansion head (Zhong et al. 2021).

Zhong et al. trained a single network on the CT alone with two outputs: the U-Net's decoder
segments the haematoma, and the deepest layer of the U (the "bridge", the most aggregated context)
feeds a binary classifier of early haematoma expansion. The segmentation task shapes the shared
encoder, the classification head reads it. No clinical variable is an input. Here the expansion
head pools the bottleneck over the whole slice and over the haematoma the segmentation output
finds (see :class:`TwoOutputUNetClassifier`).

Here the network is 2-D (:class:`radhe.segmentation.unet.UNet2d`, slices resized to
``input_size``), trained on the slices holding haematoma — segmentation loss (BCE + soft Dice) on
every sampled slice, class-weighted BCE of the case's expansion label on haematoma slices — and a
case's probability is the mean expansion logit of the ``2 * n_slices + 1`` slices with the largest
*predicted* haematoma area, so prediction needs only the CT.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from radhe._torch_utils import NetCacheMixin, backward_step, check_frame, check_window, mean_or_nan
from radhe.errors import ConfigurationError, InputError

__all__ = ["TwoOutputUNetClassifier"]


def _two_output_net(in_channels: int, base_channels: int, levels: int, dilation: int, dropout: float):
    import torch
    from torch import nn
    from torch.nn import functional as F

    from radhe.segmentation.unet import UNet2d

    class TwoOutputUNet(nn.Module):
        """U-Net logits + an expansion logit from the bottleneck.

        The bottleneck is pooled three ways: its global mean and max, and its mean weighted by the
        segmentation output (average-pooled to the bottleneck's resolution, not back-propagated
        through), so the expansion head reads the haematoma's deep features; the predicted
        haematoma fraction of the slice (log scale) is a fourth input.
        """

        def __init__(self):
            super().__init__()
            self.unet = UNet2d(in_channels=in_channels, base_channels=base_channels, levels=levels,
                               dilation=dilation)
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(3 * self.unet.bottleneck_channels + 1, 1)

        def forward(self, x):
            seg, deep = self.unet(x, return_bottleneck=True)
            weight = F.adaptive_avg_pool2d(torch.sigmoid(seg.detach().float()), deep.shape[-2:])
            total = weight.sum(dim=(2, 3))
            focused = (deep * weight).sum(dim=(2, 3)) / total.clamp(min=1e-3)
            fraction = torch.log1p(100 * weight.mean(dim=(2, 3)))
            pooled = torch.cat([deep.mean(dim=(2, 3)), deep.amax(dim=(2, 3)), focused, fraction], dim=1)
            return seg, self.head(self.dropout(pooled)).squeeze(1)

    return TwoOutputUNet()


class TwoOutputUNetClassifier(NetCacheMixin, ClassifierMixin, BaseEstimator):
    """Haematoma-expansion classifier: a U-Net with a segmentation and a classification output.

    Parameters
    ----------
    base_channels : int, default 8
        U-Net channels at full resolution (doubled per level).
    levels : int, default 4
        U-Net resolution levels.
    dilation : int, default 1
        Dilation of the second convolution of each encoder block (1: Zhong's plain U-Net).
    input_size : int, default 128
        Slices are resized to ``input_size`` × ``input_size`` (Zhong: 256 × 256 × 32 volumes).
    window : (float, float), default (0, 80)
        HU window mapped to [0, 1].
    skull_strip : bool, default True
        Zero everything outside the intracranial space first (Zhong skull-stripped the scans).
    epochs : int, default 20
    batch_size : int, default 16
    learning_rate : float, default 3e-3
        AdamW learning rate, cosine-annealed to a tenth over ``epochs``.
    weight_decay : float, default 1e-4
    segmentation_weight : float, default 1.0
        Weight of the segmentation loss relative to the classification loss.
    negative_ratio : float, default 0.25
        Slices without haematoma sampled per epoch (segmentation loss only), as a multiple of the
        haematoma slices.
    class_weight : "balanced" or None, default "balanced"
        "balanced": positive slices weighted by negatives / positives in the classification loss.
    dropout : float, default 0.3
        Dropout before the classification layer.
    n_slices : int, default 3
        A case is scored on the ``2 * n_slices + 1`` slices of largest predicted haematoma area.
    augment : bool, default True
        Random flips, rotations (±10°), scalings (±10 %) and intensity jitter (Zhong: 3-D rotation,
        translation and scaling).
    image_column, mask_column : str, default "image", "mask"
        Manifest columns; the mask is needed only by ``fit``.
    device : str, default "auto"
    n_threads : int or None, default None
        Torch CPU threads (restored afterwards); None: the CPUs available.
    random_state : int or None, default None
        Seed (None means 0).
    verbose : bool, default False

    Attributes
    ----------
    classes_ : ndarray, ``[0, 1]``
    model_state_ : dict
        Trained weights.
    history_ : pandas.DataFrame
        Per epoch: ``segmentation_loss``, ``classification_loss``, ``seconds``.
    slices_ : pandas.DataFrame
        Set by ``predict_proba``: per case the slices used and their predicted areas (pixels).
    """

    def __init__(
        self,
        *,
        base_channels: int = 8,
        levels: int = 4,
        dilation: int = 1,
        input_size: int = 128,
        window: tuple[float, float] = (0.0, 80.0),
        skull_strip: bool = True,
        epochs: int = 20,
        batch_size: int = 16,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        segmentation_weight: float = 1.0,
        negative_ratio: float = 0.25,
        class_weight: str | None = "balanced",
        dropout: float = 0.3,
        n_slices: int = 3,
        augment: bool = True,
        image_column: str = "image",
        mask_column: str = "mask",
        device: str = "auto",
        n_threads: int | None = None,
        random_state=None,
        verbose: bool = False,
    ):
        self.base_channels = base_channels
        self.levels = levels
        self.dilation = dilation
        self.input_size = input_size
        self.window = window
        self.skull_strip = skull_strip
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.segmentation_weight = segmentation_weight
        self.negative_ratio = negative_ratio
        self.class_weight = class_weight
        self.dropout = dropout
        self.n_slices = n_slices
        self.augment = augment
        self.image_column = image_column
        self.mask_column = mask_column
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------------------------ helpers
    def _check_params(self) -> None:
        if self.class_weight not in ("balanced", None):
            raise ConfigurationError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")
        check_window(self.window)
        if self.levels < 2 or self.base_channels < 1:
            raise ConfigurationError(f"levels must be >= 2 and base_channels >= 1, got {self.levels}, "
                                     f"{self.base_channels}")
        if self.input_size is None or self.input_size < 2 ** (self.levels - 1):
            raise ConfigurationError(f"input_size must be an int >= {2 ** (self.levels - 1)}, got {self.input_size!r}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigurationError(f"epochs must be >= 1 and batch_size >= 2, got {self.epochs}, {self.batch_size}")
        if self.segmentation_weight < 0 or self.negative_ratio < 0 or self.n_slices < 0:
            raise ConfigurationError("segmentation_weight, negative_ratio and n_slices must be >= 0")

    def _threads(self) -> int:
        from radhe.segmentation import _slices as S

        return self.n_threads if self.n_threads is not None else S.default_threads()

    def _grid(self, case):
        from radhe.segmentation import _slices as S

        image = S.preprocess(case, tuple(self.window), self.skull_strip)
        grid, _ = S.to_network_grid(image, self.input_size, 2 ** (self.levels - 1))
        return grid.astype(np.float32)

    def _new_network(self):
        return _two_output_net(1, self.base_channels, self.levels, self.dilation, self.dropout)

    # ---------------------------------------------------------------------------------------- fit
    def fit(self, X: pd.DataFrame, y):
        """Train on the manifest ``X`` (CT and reference mask of every case) and labels ``y`` (0/1)."""
        import torch
        from torch.nn import functional as F

        from radhe.evaluation.metrics import _check_binary
        from radhe.segmentation import _slices as S
        from radhe.segmentation.segmenter import _soft_dice_loss

        self._check_params()
        check_frame(X, (self.image_column, self.mask_column), "TwoOutputUNetClassifier.fit")
        y = _check_binary(y)
        if y.size != len(X):
            raise InputError(f"TwoOutputUNetClassifier.fit: y has {y.size} labels for {len(X)} manifest rows")
        if np.unique(y).size < 2:
            raise InputError("TwoOutputUNetClassifier.fit needs both classes in y")
        start = time.perf_counter()
        seed = S.seed_from(self.random_state)
        rng = np.random.default_rng(seed)
        images, masks = [], []
        for row in X.to_dict("records"):
            case = S.load_case(row[self.image_column], row[self.mask_column], case_id=row["case_id"],
                               require_mask=True)
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
        device = S.resolve_device(self.device)
        history = []
        with S.torch_runtime(self._threads(), seed):
            generator = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
            net = self._new_network().to(device)
            optimizer = torch.optim.AdamW(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(self.epochs),
                                                                   eta_min=self.learning_rate / 10)
            pos_weight = torch.tensor(pw, dtype=torch.float32, device=device)
            for epoch in range(1, int(self.epochs) + 1):
                t0 = time.perf_counter()
                n_neg_slices = min(len(negatives), int(round(self.negative_ratio * len(positives))))
                chosen = [(c, z, True) for c, z in positives] + [
                    (*negatives[i], False) for i in rng.choice(len(negatives), n_neg_slices, replace=False)]
                order = rng.permutation(len(chosen))
                net.train()
                seg_losses, cls_losses = [], []
                for b in range(0, len(order), self.batch_size):
                    batch = [chosen[i] for i in order[b:b + self.batch_size]]
                    if len(batch) < 2:
                        continue
                    x = torch.from_numpy(np.stack([images[c][z][None] for c, z, _ in batch]))
                    t = torch.from_numpy(np.stack([masks[c][z][None] for c, z, _ in batch]))
                    has = torch.tensor([h for _, _, h in batch], dtype=torch.bool)
                    label = torch.tensor([float(y[c]) for c, _, _ in batch])
                    if self.augment:
                        x, t = S.augment_batch(x, t, generator)
                    x, t, has, label = x.to(device), t.to(device), has.to(device), label.to(device)
                    seg_logits, cls_logit = net(x)
                    seg_loss = F.binary_cross_entropy_with_logits(seg_logits, t) + _soft_dice_loss(seg_logits, t)
                    loss = self.segmentation_weight * seg_loss
                    if bool(has.any()):
                        cls_loss = F.binary_cross_entropy_with_logits(cls_logit[has], label[has], pos_weight=pos_weight)
                        loss = loss + cls_loss
                        cls_losses.append(float(cls_loss.detach()))
                    backward_step(optimizer, loss)
                    seg_losses.append(float(seg_loss.detach()))
                scheduler.step()
                history.append({"epoch": epoch,
                                "segmentation_loss": mean_or_nan(seg_losses),
                                "classification_loss": mean_or_nan(cls_losses),
                                "seconds": time.perf_counter() - t0})
                if self.verbose:
                    h = history[-1]
                    print(f"[TwoOutputUNetClassifier] epoch {epoch:3d}  segmentation {h['segmentation_loss']:.4f}  "
                          f"classification {h['classification_loss']:.4f}", flush=True)
        self.model_state_ = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        self.history_ = pd.DataFrame(history, columns=["epoch", "segmentation_loss", "classification_loss", "seconds"])
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        self._net = None
        self.fit_time_ = time.perf_counter() - start
        return self

    # ----------------------------------------------------------------------------------- predict
    def _network(self):
        net = getattr(self, "_net", None)
        if net is None:
            from radhe.segmentation import _slices as S

            net = self._new_network()
            net.load_state_dict(self.model_state_)
            self._net = net.eval().to(S.resolve_device(self.device))
        return self._net

    def _case_outputs(self, image_path, case_id):
        """Per-slice segmentation probabilities ``(z, s, s)`` and expansion logits ``(z,)`` of one case."""
        import torch

        from radhe.segmentation import _slices as S

        grid = self._grid(S.load_case(image_path, None, case_id=case_id))
        net = self._network()
        device = S.resolve_device(self.device)
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
        from radhe.segmentation import _slices as S

        check_is_fitted(self, "model_state_")
        check_frame(X, (self.image_column,), "TwoOutputUNetClassifier")
        k = 2 * int(self.n_slices) + 1
        scores, records = [], []
        with S.torch_runtime(self._threads(), None, deterministic=False):
            for case_id, image in zip(X["case_id"], X[self.image_column], strict=True):
                prob, logit = self._case_outputs(image, case_id)
                area = (prob >= 0.5).sum(axis=(1, 2)).astype(float)
                # slices with no predicted haematoma rank by their peak probability instead
                rank = np.where(area > 0, area + 1.0, prob.max(axis=(1, 2)))
                chosen = np.sort(np.argsort(-rank, kind="stable")[:k])
                scores.append(float(logit[chosen].mean()))
                records.append({"case_id": str(case_id), "slices": chosen.tolist(),
                                "predicted_area_px": area[chosen].astype(int).tolist()})
        self.slices_ = pd.DataFrame(records, index=X.index)
        return np.asarray(scores)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """``(n_cases, 2)`` probabilities of no expansion / expansion."""
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def predict_masks(self, X: pd.DataFrame) -> list[np.ndarray]:
        """The segmentation output: a ``(z, y, x)`` uint8 mask per case on the image's own grid."""
        from radhe.segmentation import _slices as S

        check_is_fitted(self, "model_state_")
        out = []
        with S.torch_runtime(self._threads(), None, deterministic=False):
            for case_id, image in zip(X["case_id"], X[self.image_column], strict=True):
                case = S.load_case(image, None, case_id=case_id)
                prep = S.preprocess(case, tuple(self.window), self.skull_strip)
                _, undo = S.to_network_grid(prep, self.input_size, 2 ** (self.levels - 1))
                prob, _ = self._case_outputs(image, case_id)
                out.append((undo(prob) >= 0.5).astype(np.uint8))
        return out

    def dice(self, X: pd.DataFrame) -> pd.Series:
        """Dice of the segmentation output against ``X[mask_column]``, per case (index of X)."""
        from radhe.segmentation import _slices as S
        from radhe.segmentation.metrics import dice_score

        check_frame(X, (self.image_column, self.mask_column), "TwoOutputUNetClassifier.dice")
        values = []
        for (case_id, mask_path), pred in zip(zip(X["case_id"], X[self.mask_column], strict=True),
                                              self.predict_masks(X), strict=True):
            truth = S.load_case(X.loc[X["case_id"] == case_id, self.image_column].iloc[0], mask_path,
                                case_id=case_id, require_mask=True).mask
            values.append(dice_score(truth, pred))
        return pd.Series(values, index=X.index, name="dice")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags
