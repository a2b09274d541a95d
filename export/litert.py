"""What the TFLite export and its quantization share: the converters kept quiet, and inputs
moved from the source model's NCHW to the channel-last layout of a TFLite model."""

from __future__ import annotations

import numpy as np

from kit.core.quiet import silenced


def to_layout(tensor_or_array, channel_last: bool):
    """NCHW -> NHWC for an input the model takes channel-last (torch tensors and numpy arrays)."""
    if not channel_last:
        return tensor_or_array
    return tensor_or_array.permute(0, 2, 3, 1) if hasattr(tensor_or_array, "permute") else \
        np.ascontiguousarray(tensor_or_array.transpose(0, 2, 3, 1))


def quiet_converters():
    """The converters' own chatter (warnings, progress, log lines) says nothing to our users."""
    return silenced("absl", "torch.export", "torch._dynamo", "litert_torch")
