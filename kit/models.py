"""Reference architectures built in code (no downloads, no torchvision), usable as factories:
``kit export kit.models:make_mobilenet_v2 --input-shape 1x3x224x224 ...``.

- ``make_digits_cnn``: the demo's small CNN (1x8x8 digits);
- ``make_mobilenet_style``: a small MobileNetV2-style net (the kit's own test model);
- ``make_mobilenet_v2``: MobileNetV2 (Sandler et al. 2018), width multiplier ``width``;
- ``make_mobilenet_v3_small`` / ``make_mobilenet_v3_large``: MobileNetV3 (Howard et al. 2019):
  hard-swish, squeeze-excitation with hard-sigmoid gates; ``minimalistic=True`` for the Edge TPU;
- ``make_resnet18``: ResNet-18 (He et al. 2015), basic blocks with chained residual adds;
- ``make_squeezenet``: SqueezeNet 1.1 (Iandola et al. 2016): Fire modules concatenate their
  two expand branches (torch.cat), and the head ends in global average pooling.

Layer layouts, channel rounding and initialisation follow the papers' reference code
(torchvision's implementations), so a state_dict trained there has the same shapes here
(the parameter names differ). The nets are resolution-agnostic: the resolution is the
export's ``--input-shape`` (MobileNet's 224, 192, 160, 128, 96; at least 32 for the five
stride-2 stages). A factory takes no arguments on the command line; for another width or
class count write one: ``def make_model(): return make_mobilenet_v2(width=0.35, classes=10)``.

This module imports torch; ``import kit`` does not import it.
"""

from __future__ import annotations

import torch
from torch import nn


def make_digits_cnn() -> nn.Module:
    """Conv + batch-norm + depthwise-separable conv + linear: 1x8x8 grayscale in, 10 logits out."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )


def _divisible(channels: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of ``divisor``, never more than 10% down
    (the MobileNets' rule: hardware likes multiples of 8)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def _conv_bn(channels_in: int, channels_out: int, kernel: int = 1, stride: int = 1, groups: int = 1,
             activation: type[nn.Module] | None = nn.ReLU6) -> nn.Sequential:
    """Convolution (no bias: batch-norm follows), batch-norm and an optional activation."""
    layers = [nn.Conv2d(channels_in, channels_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
              nn.BatchNorm2d(channels_out)]
    return nn.Sequential(*layers, activation()) if activation else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand (absent when ``expand`` is 1), 3x3 depthwise, 1x1 linear
    projection; the input is added back when stride and channels allow."""

    def __init__(self, channels_in: int, channels_out: int, stride: int, expand: int = 4):
        super().__init__()
        hidden = channels_in * expand
        self.residual = stride == 1 and channels_in == channels_out
        expansion = [nn.Conv2d(channels_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()] \
            if expand != 1 else []
        self.layers = nn.Sequential(
            *expansion,
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
    """A small MobileNetV2-style net (inverted residuals, depthwise convs, ReLU6), stride 4 in all."""
    return MobileNetStyle(in_channels, classes, width)


# ----- MobileNetV2 -------------------------------------------------------------------------------

# expansion t, output channels c, repeats n, first stride s: the paper's Table 2.
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    def __init__(self, classes: int = 1000, width: float = 1.0, in_channels: int = 3, dropout: float = 0.2):
        super().__init__()
        channels = _divisible(32 * width)
        layers: list[nn.Module] = [_conv_bn(in_channels, channels, 3, 2)]
        for expand, channels_out, repeats, stride in MOBILENET_V2_STAGES:
            channels_out = _divisible(channels_out * width)
            for index in range(repeats):
                layers.append(InvertedResidual(channels, channels_out, stride if index == 0 else 1, expand))
                channels = channels_out
        self.last_channels = _divisible(1280 * max(1.0, width))  # the last conv never narrows below 1280
        layers.append(_conv_bn(channels, self.last_channels))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channels, classes))
        _initialise(self)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def make_mobilenet_v2(classes: int = 1000, width: float = 1.0, in_channels: int = 3) -> nn.Module:
    """MobileNetV2 with width multiplier ``width`` (1.0, 0.75, 0.5, 0.35, ...): 17 inverted
    residual blocks, 10 of them adding their input back (chained residual adds)."""
    return MobileNetV2(classes, width, in_channels)


# ----- MobileNetV3 -------------------------------------------------------------------------------


class SqueezeExcitation(nn.Module):
    """Channel attention: global average pool, 1x1 conv down, ReLU, 1x1 conv up, hard-sigmoid gate
    multiplied into the input."""

    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))


class MobileNetV3Block(nn.Module):
    """1x1 expand (absent when not widening), kxk depthwise, optional squeeze-excitation, 1x1 linear
    projection; the input is added back when stride and channels allow."""

    def __init__(self, channels_in: int, kernel: int, hidden: int, channels_out: int, excite: bool,
                 activation: type[nn.Module], stride: int):
        super().__init__()
        self.residual = stride == 1 and channels_in == channels_out
        layers: list[nn.Module] = []
        if hidden != channels_in:
            layers.append(_conv_bn(channels_in, hidden, activation=activation))
        layers.append(_conv_bn(hidden, hidden, kernel, stride, groups=hidden, activation=activation))
        if excite:
            layers.append(SqueezeExcitation(hidden, _divisible(hidden // 4)))
        layers.append(_conv_bn(hidden, channels_out, activation=None))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        y = self.layers(x)
        return x + y if self.residual else y


RE, HS = nn.ReLU, nn.Hardswish
# input channels, kernel, expanded channels, output channels, squeeze-excitation, activation, stride:
# the paper's Tables 1 and 2.
MOBILENET_V3_SMALL = ((16, 3, 16, 16, True, RE, 2), (16, 3, 72, 24, False, RE, 2), (24, 3, 88, 24, False, RE, 1),
                      (24, 5, 96, 40, True, HS, 2), (40, 5, 240, 40, True, HS, 1), (40, 5, 240, 40, True, HS, 1),
                      (40, 5, 120, 48, True, HS, 1), (48, 5, 144, 48, True, HS, 1), (48, 5, 288, 96, True, HS, 2),
                      (96, 5, 576, 96, True, HS, 1), (96, 5, 576, 96, True, HS, 1))
MOBILENET_V3_LARGE = ((16, 3, 16, 16, False, RE, 1), (16, 3, 64, 24, False, RE, 2), (24, 3, 72, 24, False, RE, 1),
                      (24, 5, 72, 40, True, RE, 2), (40, 5, 120, 40, True, RE, 1), (40, 5, 120, 40, True, RE, 1),
                      (40, 3, 240, 80, False, HS, 2), (80, 3, 200, 80, False, HS, 1), (80, 3, 184, 80, False, HS, 1),
                      (80, 3, 184, 80, False, HS, 1), (80, 3, 480, 112, True, HS, 1),
                      (112, 3, 672, 112, True, HS, 1), (112, 5, 672, 160, True, HS, 2),
                      (160, 5, 960, 160, True, HS, 1), (160, 5, 960, 160, True, HS, 1))


class MobileNetV3(nn.Module):
    def __init__(self, blocks, last_channels: int, classes: int = 1000, width: float = 1.0, in_channels: int = 3,
                 dropout: float = 0.2, minimalistic: bool = False):
        super().__init__()
        activation = RE if minimalistic else HS
        if minimalistic:  # Keras's definition: 3x3 kernels, no squeeze-excitation, ReLU everywhere
            blocks = [(c_in, 3, hidden, c_out, False, RE, stride) for c_in, _, hidden, c_out, _, _, stride in blocks]
        layers: list[nn.Module] = [_conv_bn(in_channels, _divisible(16 * width), 3, 2, activation=activation)]
        for channels_in, kernel, hidden, channels_out, excite, activation, stride in blocks:
            layers.append(MobileNetV3Block(_divisible(channels_in * width), kernel, _divisible(hidden * width),
                                           _divisible(channels_out * width), excite, activation, stride))
        features_out = _divisible(blocks[-1][3] * width)
        layers.append(_conv_bn(features_out, 6 * features_out, activation=activation))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        last_channels = _divisible(last_channels * width)
        self.classifier = nn.Sequential(nn.Linear(6 * features_out, last_channels), activation(),
                                        nn.Dropout(dropout), nn.Linear(last_channels, classes))
        _initialise(self)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def make_mobilenet_v3_small(classes: int = 1000, width: float = 1.0, in_channels: int = 3,
                            minimalistic: bool = False) -> nn.Module:
    """MobileNetV3-Small: hard-swish, squeeze-excitation in 9 of 11 blocks. ``minimalistic``
    (Keras's variant, what Coral runs on the Edge TPU, which has no hard-swish): ReLU, 3x3
    kernels, no squeeze-excitation."""
    return MobileNetV3(MOBILENET_V3_SMALL, 1024, classes, width, in_channels, minimalistic=minimalistic)


def make_mobilenet_v3_large(classes: int = 1000, width: float = 1.0, in_channels: int = 3,
                            minimalistic: bool = False) -> nn.Module:
    """MobileNetV3-Large: hard-swish, squeeze-excitation in 8 of 15 blocks (``minimalistic``:
    as for the small one)."""
    return MobileNetV3(MOBILENET_V3_LARGE, 1280, classes, width, in_channels, minimalistic=minimalistic)


# ----- ResNet ------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convs; the input (through a strided 1x1 conv when the shape changes) is added
    before the last ReLU."""

    def __init__(self, channels_in: int, channels_out: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(_conv_bn(channels_in, channels_out, 3, stride, activation=nn.ReLU),
                                    _conv_bn(channels_out, channels_out, 3, activation=None))
        self.shortcut = _conv_bn(channels_in, channels_out, 1, stride, activation=None) \
            if stride != 1 or channels_in != channels_out else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.layers(x) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks=(2, 2, 2, 2), classes: int = 1000, width: int = 64, in_channels: int = 3):
        super().__init__()
        # The stem's 3x3/2 max-pool with padding 1, with its padding made explicit zeros: the same function
        # after a ReLU (nothing is below zero), as Keras writes ResNet. A padded max-pool pads with -inf,
        # which converts to TFLite's PADV2, an op the Edge TPU lacks; zero padding converts to PAD.
        layers: list[nn.Module] = [_conv_bn(in_channels, width, 7, 2, activation=nn.ReLU), nn.ZeroPad2d(1),
                                   nn.MaxPool2d(3, 2)]
        channels = width
        for stage, repeats in enumerate(blocks):
            channels_out = width * 2 ** stage
            for index in range(repeats):
                layers.append(BasicBlock(channels, channels_out, 2 if stage > 0 and index == 0 else 1))
                channels = channels_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)
        _initialise(self, linear_std=None)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def make_resnet18(classes: int = 1000, width: int = 64, in_channels: int = 3) -> nn.Module:
    """ResNet-18: a 7x7 stem and max-pool, then four stages of two basic blocks (widths
    ``width`` x 1, 2, 4, 8); eight chained residual adds."""
    return ResNet((2, 2, 2, 2), classes, width, in_channels)


# ----- SqueezeNet: concatenation and global pooling ----------------------------------------------


class Fire(nn.Module):
    """1x1 squeeze, then 1x1 and 3x3 expand branches concatenated along channels."""

    def __init__(self, channels_in: int, squeeze: int, expand: int):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(channels_in, squeeze, 1), nn.ReLU())
        self.expand1x1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.expand3x3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

    def forward(self, x):
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], 1)


# Fire modules as (squeeze, expand) channels; None is a 3x3 stride-2 max-pool (rounding up, as the original).
SQUEEZENET_1_1 = ((16, 64), (16, 64), None, (32, 128), (32, 128), None, (48, 192), (48, 192), (64, 256), (64, 256))


class SqueezeNet(nn.Module):
    def __init__(self, classes: int = 1000, width: float = 1.0, in_channels: int = 3, dropout: float = 0.5):
        super().__init__()
        scaled = lambda channels: max(8, int(channels * width))  # noqa: E731
        channels = scaled(64)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, 2), nn.ReLU(),
                                   nn.MaxPool2d(3, 2, ceil_mode=True)]
        for fire in SQUEEZENET_1_1:
            if fire is None:
                layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
            else:
                layers.append(Fire(channels, scaled(fire[0]), scaled(fire[1])))
                channels = 2 * scaled(fire[1])
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Conv2d(channels, classes, 1), nn.ReLU(),
                                        nn.AdaptiveAvgPool2d(1))
        for layer in self.modules():  # the original's initialisation: He (uniform), the class conv small
            if isinstance(layer, nn.Conv2d):
                nn.init.zeros_(layer.bias)
                if layer is self.classifier[1]:
                    nn.init.normal_(layer.weight, 0, 0.01)
                else:
                    nn.init.kaiming_uniform_(layer.weight)

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


def make_squeezenet(classes: int = 1000, width: float = 1.0, in_channels: int = 3) -> nn.Module:
    """SqueezeNet 1.1: eight Fire modules (each a torch.cat of two branches), global average pooling head."""
    return SqueezeNet(classes, width, in_channels)


def _initialise(model: nn.Module, linear_std: float | None = 0.01) -> None:
    """The reference initialisation: He (fan-out) for convs, unit batch-norm, small linear weights."""
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.Linear) and linear_std is not None:
            nn.init.normal_(layer.weight, 0, linear_std)
            nn.init.zeros_(layer.bias)


class ShapeDetector(nn.Module):
    """A small anchor-free detector (CenterNet-style: a class heatmap and a box per cell of a
    stride-4 grid) for the detection demo. ``forward`` gives the Ultralytics layout the kit
    decodes, [N, 4 + classes, cells]: centre x, centre y, width, height in input pixels, then
    per-class scores; ``raw`` gives the heatmap logits and box terms training needs."""

    stride = 4

    def __init__(self, classes: int = 3, size: int = 64, width: int = 48):
        super().__init__()
        block = lambda i, o, s=1, d=1: nn.Sequential(  # noqa: E731
            nn.Conv2d(i, o, 3, s, padding=d, dilation=d, bias=False), nn.BatchNorm2d(o), nn.ReLU())
        # Dilated convolutions widen the receptive field to the largest shapes without a neck.
        self.body = nn.Sequential(block(3, 16, 2), block(16, 32, 2), block(32, 32), block(32, width, 1, 2),
                                  block(width, width, 1, 4), block(width, width))
        self.heat, self.box = nn.Conv2d(width, classes, 1), nn.Conv2d(width, 4, 1)
        nn.init.constant_(self.heat.bias, -2.19)  # start every cell at p = 0.1 (focal-loss practice)
        cells = size // self.stride
        ys, xs = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
        self.register_buffer("grid", torch.stack([xs, ys]).float().reshape(1, 2, -1))

    def raw(self, x):
        features = self.body(x)
        return self.heat(features), self.box(features)

    def forward(self, x):
        heat, box = self.raw(x)
        heat, box = torch.sigmoid(heat).flatten(2), box.flatten(2)
        centre = (self.grid + torch.sigmoid(box[:, :2])) * self.stride
        size = torch.exp(box[:, 2:].clamp(-4, 4)) * self.stride * 2
        return torch.cat([centre, size, heat], 1)


def make_shape_detector() -> nn.Module:
    """The detection demo's detector (3 shape classes, 64x64 RGB input in [0, 1])."""
    return ShapeDetector().eval()
