"""Ready-made model architectures, as ``keras.applications``: the ResNet family.

No pretrained weights are downloaded: pass ``weights=None`` or a local weights file.

>>> from lamina import applications
>>> applications.ResNetCIFAR(depth=8).output_shape
(None, 10)
"""

from lamina.applications import resnet
from lamina.applications.resnet import (
    ResNet18, ResNet34, ResNet50, ResNet101, ResNet152, ResNetCIFAR, preprocess_input,
)

# Keras exposes the same functions under keras.applications.resnet50 as well.
resnet50 = resnet

__all__ = [
    "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "ResNetCIFAR",
    "preprocess_input", "resnet", "resnet50",
]
