"""Small reference architectures built in code (no downloads): the demo's digits CNN and a
MobileNet-style net. Usable as factories: ``kit export kit.models:make_mobilenet_style ...``.

This module imports torch; ``import kit`` does not import it.
"""

from __future__ import annotations

from torch import nn


def make_digits_cnn() -> nn.Module:
    """Conv + batch-norm + depthwise-separable conv + linear: 1x8x8 grayscale in, 10 logits out."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, 3x3 depthwise, 1x1 linear projection, residual when shapes allow."""

    def __init__(self, channels_in: int, channels_out: int, stride: int, expand: int = 4):
        super().__init__()
        hidden = channels_in * expand
        self.residual = stride == 1 and channels_in == channels_out
        self.layers = nn.Sequential(
            nn.Conv2d(channels_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, channels_out, 1, bias=False), nn.BatchNorm2d(channels_out))

    def forward(self, x):
        y = self.layers(x)
        return x + y if self.residual else y


class MobileNetStyle(nn.Module):
    def __init__(self, in_channels: int = 3, classes: int = 10, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6(),
            InvertedResidual(width, width, 1), InvertedResidual(width, 2 * width, 2),
            InvertedResidual(2 * width, 2 * width, 1), InvertedResidual(2 * width, 4 * width, 2),
            InvertedResidual(4 * width, 4 * width, 1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, classes))

    def forward(self, x):
        return self.head(self.features(x))


def make_mobilenet_style(in_channels: int = 3, classes: int = 10, width: int = 16) -> nn.Module:
    """A MobileNetV2-style net (inverted residuals, depthwise convs, ReLU6)."""
    return MobileNetStyle(in_channels, classes, width)
