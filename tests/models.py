"""Tiny architectures built in code, used as ``tests/models.py:make_*`` factory sources.

Seeds are fixed so every factory call builds the same weights.
"""

import torch
from torch import nn


def _seeded(module: nn.Module) -> nn.Module:
    # Non-trivial batch-norm statistics, so a wrong fold or a skipped BN shows in the numbers.
    generator = torch.Generator().manual_seed(1)
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.copy_(torch.randn(layer.num_features, generator=generator) * 0.5)
            layer.running_var.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
    return module.eval()


def make_conv():
    torch.manual_seed(0)
    return _seeded(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2),
                                 nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)))


def make_depthwise():
    torch.manual_seed(0)
    return _seeded(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, groups=3), nn.Conv2d(3, 16, 1), nn.ReLU6(),
                                 nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Flatten(), nn.Linear(16 * 8 * 8, 4)))


def make_linear():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 32), nn.GELU(), nn.Linear(32, 6)).eval()


def make_batchnorm():
    torch.manual_seed(0)
    return _seeded(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                 nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6), nn.Flatten(), nn.Linear(6 * 8 * 8, 3)))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.image = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.vector = nn.Linear(7, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, image, extra):
        return self.head(self.image(image) * torch.sigmoid(self.vector(extra)))


def make_multi_input():
    torch.manual_seed(0)
    return TwoInputs().eval()


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        features = self.body(x)
        return {"logits": self.head(features), "features": features}


def make_multi_output():
    torch.manual_seed(0)
    return TwoOutputs().eval()


class FullyConvolutional(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def make_fully_convolutional():
    torch.manual_seed(0)
    return FullyConvolutional().eval()


class BatchDependent(nn.Module):
    """Doubles its output above batch 2: a tracer records one branch and the export is wrong."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x):
        y = self.linear(x)
        return y * 2 if x.shape[0] > 2 else y


def make_batch_dependent():
    torch.manual_seed(0)
    return BatchDependent().eval()


def make_raises():
    raise ValueError("the factory cannot find its config")


def make_not_a_module():
    return 42


class ReshapeByShape(nn.Module):
    """Flattens with x.view(x.shape[0], -1): the TorchScript exporter emits a chain of shape ops."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.linear = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        y = self.conv(x)
        return self.linear(y.view(y.shape[0], -1))


def make_reshape_by_shape():
    torch.manual_seed(0)
    return ReshapeByShape().eval()


class ItemInForward(nn.Module):
    """Calls .item() on data: torch.export cannot trace it, the TorchScript exporter can (always 1 here)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x):
        scale = int(x.abs().sum().item() > -1)
        return self.linear(x) * scale


def make_item_in_forward():
    torch.manual_seed(0)
    return ItemInForward().eval()


class TokenClassifier(nn.Module):
    """Integer token ids in: an embedding of ten ids, averaged, then a linear head."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, tokens):
        return self.head(self.embedding(tokens).mean(1))


def make_token_classifier():
    torch.manual_seed(0)
    return TokenClassifier().eval()


class TwoHeads(TwoOutputs):
    """Two outputs as a tuple (TorchScript's ONNX exporter cannot export a returned dict)."""

    def forward(self, x):
        features = self.body(x)
        return self.head(features), features


def make_two_heads():
    torch.manual_seed(0)
    return TwoHeads().eval()


class TinyDetector(nn.Module):
    """An Ultralytics-style head [N, 4 + 2 classes, 3 anchors] with known boxes (centre x, centre y,
    width, height in input pixels): anchor 0 is class 0 scored by the image's mean brightness,
    anchor 1 class 1 at 0.8, anchor 2 below any threshold."""

    def __init__(self):
        super().__init__()
        self.register_buffer("boxes", torch.tensor([[16.0, 8.0, 4.0], [12.0, 20.0, 4.0], [8.0, 8.0, 2.0],
                                                    [4.0, 8.0, 2.0]]))

    def forward(self, x):
        brightness = x.mean(dim=(1, 2, 3))
        zeros, ones = torch.zeros_like(brightness), torch.ones_like(brightness)
        class0 = torch.stack([brightness, zeros, 0.1 * ones], dim=1)
        class1 = torch.stack([zeros, 0.8 * ones, 0.05 * ones], dim=1)
        boxes = self.boxes.unsqueeze(0).expand(x.shape[0], 4, 3)
        return torch.cat([boxes, torch.stack([class0, class1], dim=1)], dim=1)


def make_tiny_detector():
    return TinyDetector().eval()
