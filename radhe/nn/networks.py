"""The networks of radhe's deep-learning estimators: small 2-D CNNs and the heads built on them.

All are plain :class:`torch.nn.Module` s built from BatchNorm/ReLU blocks; they hold no pretrained
weights and never download anything. A new architecture is added here (one class) and used by an
estimator through its ``_build_network`` method.

* :class:`UNet2d` — a U-Net (Ronneberger 2015) with ``levels`` resolution levels; as in Teng et al.
  (2021), the second convolution of each encoder block is dilated, widening the receptive field
  without extra parameters. ``forward(x, return_bottleneck=True)`` also returns the deepest feature
  map, from which :class:`radhe.features.CNNEmbedder` pools haematoma features (Zhong et al. 2021).
* :class:`RoiCNN` — a small classifier for haematoma ROI crops; its penultimate layer gives the
  embedding. ``pooling="haar"`` replaces max pooling by Haar-wavelet pooling (Ohkita's wavelet CNN).
* :class:`TwoOutputUNet` — a U-Net with a second, expansion output on its bottleneck (Zhong 2021).
* :class:`MarkerNet` — a ROI CNN embedding (plus optional extra features) → one logit per NCCT marker.
* :class:`BackboneHead` — a user-supplied backbone plus a linear head (fine-tuning on the label).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["UNet2d", "RoiCNN", "HaarPool2d", "TwoOutputUNet", "MarkerNet", "BackboneHead", "conv_block",
           "flatten_output", "fold_batchnorm", "max_pool_2x2"]


def conv_block(in_channels: int, out_channels: int, *, dilation: int = 1) -> nn.Sequential:
    """Two 3×3 convolutions with BatchNorm and ReLU; the second is dilated by ``dilation``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def max_pool_2x2(x: torch.Tensor, *, exact_gradient: bool = True) -> torch.Tensor:
    """2 × 2 max pooling with stride 2 (``F.max_pool2d(x, 2)``).

    With ``exact_gradient=False`` (inference) and even sizes it is the maximum of the four strided
    sub-grids: the same values, about three times faster on CPU in bfloat16 (no argmax indices kept).
    """
    if exact_gradient or x.shape[-1] % 2 or x.shape[-2] % 2:
        return F.max_pool2d(x, 2)
    return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                         torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a convolution inside an ``nn.Sequential`` into it.

    For inference only (``net`` must be in eval mode): each ``Conv2d`` → ``BatchNorm2d`` pair becomes
    one convolution with the normalisation's running statistics and affine folded into its weights
    and bias (:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`), the BatchNorm replaced by
    ``nn.Identity`` so that the layers keep their indices. The outputs are those of the unfolded
    network up to float rounding; under bfloat16 autocast on CPU it runs about twice as fast (the
    normalisation is a separate pass over every activation otherwise). ``net`` is changed in place
    and returned.

    Raises
    ------
    ValueError
        ``net`` is in training mode (batch statistics cannot be folded).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if net.training:
        raise ValueError("fold_batchnorm: the network must be in eval mode (call net.eval() first)")
    for sequential in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        names = list(sequential._modules)
        for first, second in zip(names, names[1:], strict=False):
            conv, norm = sequential._modules[first], sequential._modules[second]
            if (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats
                    and norm.running_mean is not None):
                sequential._modules[first] = fuse_conv_bn_eval(conv, norm)
                sequential._modules[second] = nn.Identity()
    return net


class UNet2d(nn.Module):
    """A 2-D U-Net for binary segmentation.

    The output is one channel of logits at the input resolution.

    Parameters
    ----------
    in_channels : int, default 1
        Input channels (1, or ``2 * context + 1`` with neighbouring slices as channels).
    base_channels : int, default 16
        Channels at the first level; doubled at each deeper level.
    levels : int, default 4
        Resolution levels (``levels - 1`` poolings): inputs must be divisible by ``2 ** (levels - 1)``.
    dilation : int, default 2
        Dilation of the second convolution in each encoder block (1 disables it).
    """

    def __init__(self, in_channels: int = 1, base_channels: int = 16, levels: int = 4, dilation: int = 2):
        super().__init__()
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        widths = [base_channels * 2**i for i in range(levels)]
        self.levels = levels
        self.bottleneck_channels = widths[-1]
        self.encoders = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.encoders.append(conv_block(previous, width, dilation=dilation))
            previous = width
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.upsamplers.append(nn.ConvTranspose2d(width * 2, width, 2, stride=2))
            self.decoders.append(conv_block(width * 2, width))
        self.head = nn.Conv2d(widths[0], 1, 1)
        # haematoma is a small fraction of the voxels: start from a low prior (focal-loss paper's trick)
        nn.init.constant_(self.head.bias, -3.0)

    def forward(self, x: torch.Tensor, return_bottleneck: bool = False):
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x)
            if i < self.levels - 1:
                skips.append(x)
                x = max_pool_2x2(x, exact_gradient=self.training)
        bottleneck = x
        for upsample, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips), strict=True):
            x = decoder(torch.cat([upsample(x), skip], dim=1))
        logits = self.head(x)
        if return_bottleneck:
            return logits, bottleneck
        return logits

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The deepest (bottleneck) feature map only; skips the decoder."""
        for i, encoder in enumerate(self.encoders):
            x = encoder(x)
            if i < self.levels - 1:
                x = max_pool_2x2(x, exact_gradient=self.training)
        return x


class HaarPool2d(nn.Module):
    """Haar-wavelet pooling: one level of the 2-D Haar transform, then a 1×1 convolution.

    The four sub-bands (LL, LH, HL, HH) of each channel are concatenated and mixed back to
    ``channels`` channels, so, unlike max pooling, the high-frequency content (edges, texture) is
    kept in the half-resolution output.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.mix = nn.Conv2d(4 * channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2), mode="replicate")
        a = x[..., 0::2, 0::2]
        b = x[..., 0::2, 1::2]
        c = x[..., 1::2, 0::2]
        d = x[..., 1::2, 1::2]
        ll = (a + b + c + d) / 2
        lh = (a - b + c - d) / 2
        hl = (a + b - c - d) / 2
        hh = (a - b - c + d) / 2
        return self.mix(torch.cat([ll, lh, hl, hh], dim=1))


class RoiCNN(nn.Module):
    """A small CNN classifying haematoma ROI crops; ``embed`` returns the penultimate layer.

    Parameters
    ----------
    in_channels : int, default 1
    base_channels : int, default 8
    depth : int, default 3
        Convolution blocks, each followed by 2× pooling.
    n_features : int, default 32
        Width of the penultimate (embedding) layer.
    pooling : {"max", "haar"}, default "max"
    dropout : float, default 0.2
    """

    def __init__(self, in_channels: int = 1, base_channels: int = 8, depth: int = 3, n_features: int = 32,
                 pooling: str = "max", dropout: float = 0.2):
        super().__init__()
        if pooling not in ("max", "haar"):
            raise ValueError(f"pooling must be 'max' or 'haar', got {pooling!r}")
        layers: list[nn.Module] = []
        previous = in_channels
        for i in range(depth):
            width = base_channels * 2**i
            layers += [
                nn.Conv2d(previous, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                HaarPool2d(width) if pooling == "haar" else nn.MaxPool2d(2),
            ]
            previous = width
        self.features = nn.Sequential(*layers)
        self.embedding = nn.Sequential(nn.Linear(previous, n_features), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(n_features, 1)
        self.n_features = n_features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.embedding(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.embed(x))).squeeze(1)


class TwoOutputUNet(nn.Module):
    """U-Net segmentation logits plus an expansion logit from the bottleneck (Zhong et al. 2021).

    The bottleneck is pooled three ways: its global mean and max, and its mean weighted by the
    segmentation output (average-pooled to the bottleneck's resolution, not back-propagated
    through), so the expansion head reads the haematoma's deep features; the predicted haematoma
    fraction of the slice (log scale) is a fourth input.
    """

    def __init__(self, in_channels: int = 1, base_channels: int = 8, levels: int = 4, dilation: int = 1,
                 dropout: float = 0.3):
        super().__init__()
        self.unet = UNet2d(in_channels=in_channels, base_channels=base_channels, levels=levels, dilation=dilation)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(3 * self.unet.bottleneck_channels + 1, 1)

    def forward(self, x: torch.Tensor):
        seg, deep = self.unet(x, return_bottleneck=True)
        weight = F.adaptive_avg_pool2d(torch.sigmoid(seg.detach().float()), deep.shape[-2:])
        total = weight.sum(dim=(2, 3))
        focused = (deep * weight).sum(dim=(2, 3)) / total.clamp(min=1e-3)
        fraction = torch.log1p(100 * weight.mean(dim=(2, 3)))
        pooled = torch.cat([deep.mean(dim=(2, 3)), deep.amax(dim=(2, 3)), focused, fraction], dim=1)
        return seg, self.head(self.dropout(pooled)).squeeze(1)


class MarkerNet(nn.Module):
    """A ROI CNN's embedding (+ ``n_extra`` extra features) → one logit per label (Ohkita's wavelet CNN).

    ``cnn`` is the ROI network (a :class:`RoiCNN`, or any module with ``embed`` and ``n_features``).
    """

    def __init__(self, cnn: nn.Module, n_extra: int, n_labels: int, dropout: float = 0.2):
        super().__init__()
        self.cnn = cnn
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.cnn.n_features + n_extra, n_labels)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        e = self.cnn.embed(x)
        if extra is not None and extra.shape[1]:
            e = torch.cat([e, extra], dim=1)
        return self.head(self.dropout(e))


class BackboneHead(nn.Module):
    """A user backbone plus a linear head; ``embed`` gives the backbone's (flattened) output."""

    def __init__(self, backbone: nn.Module, width: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(width, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return flatten_output(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x)).squeeze(1)


def flatten_output(out) -> torch.Tensor:
    """A backbone's output as ``(n, d)``: the first of a tuple, ``.logits`` of an output object, flattened."""
    if isinstance(out, (tuple, list)):  # e.g. Inception-v3's (logits, aux_logits) in training mode
        out = out[0]
    if hasattr(out, "logits"):
        out = out.logits
    return torch.flatten(out, 1)
