"""ResNet image classifiers built with the functional API.

ResNet50/101/152 reproduce Keras's ``keras.applications`` architecture and layer
names; ResNet18/34 are He et al.'s basic-block networks in torchvision's layout;
ResNetCIFAR is the paper's 6n+2-layer CIFAR network. Nothing is ever downloaded:
``weights`` is None or the path of a local lamina weights file.
"""

from __future__ import annotations

import numbers
import os
import sys
import warnings

import torch

from lamina import config
from lamina.layers import (
    Activation, Add, BatchNormalization, Conv2D, Dense, GlobalAveragePooling2D, GlobalMaxPooling2D,
    Input, MaxPooling2D, ZeroPadding2D,
)
from lamina.layers.graph import SymbolicTensor
from lamina.models.functional import Functional

__all__ = ["ResNet50", "ResNet101", "ResNet152", "ResNet18", "ResNet34", "ResNetCIFAR", "preprocess_input"]

_WEIGHTS_EXTENSIONS = (".weights.safetensors", ".lamina", ".keras")
# Keras's ImageNet ResNets use this epsilon (a cuDNN lower bound); torchvision uses 1e-5.
_KERAS_EPSILON = 1.001e-5
_TORCH_EPSILON = 1e-5
_CAFFE_MEAN = (103.939, 116.779, 123.68)
# torchvision's kaiming_normal_(mode="fan_out", nonlinearity="relu") for basic-block convolutions.
_HE_FAN_OUT = {"class_name": "VarianceScaling",
               "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"}}


# ---------------------------------------------------------------------- argument checks
def _check_weights(weights, model_name: str):
    """Return the local weights path to load (or None); refuse anything that needs a download."""
    if weights is None:
        return None
    advice = (
        "lamina downloads nothing, so there are no pretrained weights to fetch. Pass "
        "weights=None for a randomly initialized model, or the path of a local weights file that "
        "exists (a '.weights.safetensors' file written by model.save_weights, or a '.lamina' "
        "model file)."
    )
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"{model_name} received weights={weights!r} of type {type(weights).__name__}. {advice}")
    path = os.fspath(weights)
    if path == "imagenet":
        raise ValueError(f"{model_name} received weights='imagenet'. {advice}")
    if not os.path.isfile(path):
        raise ValueError(f"{model_name} received weights={path!r}, which is not an existing file. {advice}")
    if not path.endswith(_WEIGHTS_EXTENSIONS):
        raise ValueError(
            f"{model_name} received weights={path!r}, but lamina loads weights only from files ending "
            f"in {' or '.join(repr(e) for e in _WEIGHTS_EXTENSIONS)}. {advice}"
        )
    return path


def _resolve_input_shape(input_shape, default_size: int, min_size: int, include_top: bool, model_name: str):
    """The image shape without the batch axis, validated as ``obtain_input_shape`` does in Keras."""
    channels_last = config.image_data_format() == "channels_last"
    if input_shape is None:
        if include_top:
            size = (default_size, default_size)
        else:
            size = (None, None)
        return (*size, 3) if channels_last else (3, *size)
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(s is None or (isinstance(s, numbers.Integral) and s > 0) for s in shape):
        raise ValueError(
            f"{model_name} expects input_shape to be a tuple of three positive ints (height, width, "
            f"channels) for channels_last, or (channels, height, width) for channels_first; received "
            f"input_shape={input_shape!r}."
        )
    shape = tuple(None if s is None else int(s) for s in shape)
    spatial, channels = (shape[:2], shape[2]) if channels_last else (shape[1:], shape[0])
    if any(s is not None and s < min_size for s in spatial):
        raise ValueError(
            f"{model_name} needs images of at least {min_size}x{min_size}; received "
            f"input_shape={input_shape!r}. Resize the images or pass a larger input_shape."
        )
    if channels not in (1, 3):
        warnings.warn(
            f"{model_name} usually expects 1 or 3 input channels, but input_shape={input_shape!r} "
            f"has {channels} channels.",
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )
    if include_top and None in shape:
        raise ValueError(
            f"{model_name} with include_top=True needs a fully static input_shape; received "
            f"input_shape={input_shape!r}. Give every dimension, or pass include_top=False."
        )
    return shape


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this module."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    return level


def _check_head(include_top, pooling, classes, model_name: str) -> None:
    if pooling not in (None, "avg", "max"):
        raise ValueError(
            f"{model_name} expects pooling to be None, 'avg' or 'max'; received pooling={pooling!r}."
        )
    if include_top and (not isinstance(classes, int) or isinstance(classes, bool) or classes < 1):
        raise ValueError(
            f"{model_name} expects classes to be a positive int when include_top=True; "
            f"received classes={classes!r}."
        )


def _image_input(input_tensor, shape, model_name: str):
    if input_tensor is None:
        return Input(shape=shape)
    if not isinstance(input_tensor, SymbolicTensor):
        raise TypeError(
            f"{model_name} expects input_tensor to be a symbolic tensor (the output of lamina.Input "
            f"or of layers applied to it); received an object of type {type(input_tensor).__name__}. "
            f"Pass input_shape=... instead, or wrap it: input_tensor=lamina.Input(shape=...)."
        )
    return input_tensor


def _source_inputs(tensor: SymbolicTensor) -> list:
    """The model inputs ``tensor`` depends on, so a ResNet can sit on top of other layers."""
    found, stack, seen = [], [tensor], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        parents = current.node.inputs if current.node is not None else []
        if parents:
            stack.extend(reversed(parents))
        else:
            found.append(current)
    return found


# ---------------------------------------------------------------------- building blocks
def _bn_axis() -> int:
    return 3 if config.image_data_format() == "channels_last" else 1


def _bottleneck_block(x, filters: int, stride: int, conv_shortcut: bool, name: str):
    """Keras's ResNet v1 bottleneck: 1x1 (strided) -> 3x3 -> 1x1 with 4x filters, biased convs."""
    bn_axis = _bn_axis()
    if conv_shortcut:
        shortcut = Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = BatchNormalization(axis=bn_axis, epsilon=_KERAS_EPSILON, name=f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    x = BatchNormalization(axis=bn_axis, epsilon=_KERAS_EPSILON, name=f"{name}_1_bn")(x)
    x = Activation("relu", name=f"{name}_1_relu")(x)
    x = Conv2D(filters, 3, padding="same", name=f"{name}_2_conv")(x)
    x = BatchNormalization(axis=bn_axis, epsilon=_KERAS_EPSILON, name=f"{name}_2_bn")(x)
    x = Activation("relu", name=f"{name}_2_relu")(x)
    x = Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    x = BatchNormalization(axis=bn_axis, epsilon=_KERAS_EPSILON, name=f"{name}_3_bn")(x)
    x = Add(name=f"{name}_add")([shortcut, x])
    return Activation("relu", name=f"{name}_out")(x)


def _basic_block(x, filters: int, stride: int, conv_shortcut: bool, name: str):
    """He et al.'s basic block: (strided) 3x3 -> 3x3, bias-free convs, as torchvision."""
    bn_axis = _bn_axis()
    conv_args = {"use_bias": False, "kernel_initializer": _HE_FAN_OUT}
    if conv_shortcut:
        shortcut = Conv2D(filters, 1, strides=stride, name=f"{name}_0_conv", **conv_args)(x)
        shortcut = BatchNormalization(axis=bn_axis, epsilon=_TORCH_EPSILON, name=f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    if stride > 1:
        # padding="same" would pad a strided conv asymmetrically (0 before, 1 after, as
        # TensorFlow); torch pads 1 on each side, so the padding is explicit.
        x = ZeroPadding2D(padding=((1, 1), (1, 1)), name=f"{name}_1_pad")(x)
        x = Conv2D(filters, 3, strides=stride, name=f"{name}_1_conv", **conv_args)(x)
    else:
        x = Conv2D(filters, 3, padding="same", name=f"{name}_1_conv", **conv_args)(x)
    x = BatchNormalization(axis=bn_axis, epsilon=_TORCH_EPSILON, name=f"{name}_1_bn")(x)
    x = Activation("relu", name=f"{name}_1_relu")(x)
    x = Conv2D(filters, 3, padding="same", name=f"{name}_2_conv", **conv_args)(x)
    x = BatchNormalization(axis=bn_axis, epsilon=_TORCH_EPSILON, name=f"{name}_2_bn")(x)
    x = Add(name=f"{name}_add")([shortcut, x])
    return Activation("relu", name=f"{name}_out")(x)


def _stack(x, block, filters: int, blocks: int, stride: int, name: str, first_needs_projection: bool):
    x = block(x, filters, stride, first_needs_projection, f"{name}_block1")
    for index in range(2, blocks + 1):
        x = block(x, filters, 1, False, f"{name}_block{index}")
    return x


def _imagenet_stem(x, use_bias: bool, epsilon: float, **conv_args):
    """7x7/2 convolution, BN, ReLU and 3x3/2 max pooling, with torch-style symmetric padding."""
    x = ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(x)
    x = Conv2D(64, 7, strides=2, use_bias=use_bias, name="conv1_conv", **conv_args)(x)
    x = BatchNormalization(axis=_bn_axis(), epsilon=epsilon, name="conv1_bn")(x)
    x = Activation("relu", name="conv1_relu")(x)
    # Zeros pad like -inf here: the ReLU output being padded is never negative.
    x = ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    return MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def _head(x, include_top, pooling, classes, classifier_activation):
    if include_top:
        x = GlobalAveragePooling2D(name="avg_pool")(x)
        return Dense(classes, activation=classifier_activation, name="predictions")(x)
    if pooling == "avg":
        return GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return GlobalMaxPooling2D(name="max_pool")(x)
    return x


def _build(body, model_name, include_top, weights, input_tensor, input_shape, pooling, classes,
           classifier_activation, name, default_size, min_size):
    """Validate the arguments, wire ``body`` between the input and the head, load local weights."""
    weights_path = _check_weights(weights, model_name)
    _check_head(include_top, pooling, classes, model_name)
    shape = _resolve_input_shape(input_shape, default_size, min_size, include_top, model_name)
    image = _image_input(input_tensor, shape, model_name)
    outputs = _head(body(image), include_top, pooling, classes, classifier_activation)
    inputs = image if input_tensor is None else _source_inputs(input_tensor)
    if isinstance(inputs, list) and len(inputs) == 1:
        inputs = inputs[0]
    model = Functional(inputs, outputs, name=name)
    if weights_path is not None:
        model.load_weights(weights_path)
    return model


def _bottleneck_resnet(blocks_per_stage, model_name, include_top, weights, input_tensor, input_shape,
                       pooling, classes, classifier_activation, name):
    def body(x):
        x = _imagenet_stem(x, use_bias=True, epsilon=_KERAS_EPSILON)
        for stage, (filters, blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_stage)):
            x = _stack(x, _bottleneck_block, filters, blocks, 1 if stage == 0 else 2, f"conv{stage + 2}", True)
        return x

    return _build(body, model_name, include_top, weights, input_tensor, input_shape, pooling, classes,
                  classifier_activation, name, default_size=224, min_size=32)


def _basic_resnet(blocks_per_stage, model_name, include_top, weights, input_tensor, input_shape,
                  pooling, classes, classifier_activation, name):
    def body(x):
        x = _imagenet_stem(x, use_bias=False, epsilon=_TORCH_EPSILON, kernel_initializer=_HE_FAN_OUT)
        for stage, (filters, blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_stage)):
            # The first stage keeps 64 channels at stride 1, so it needs no projection.
            x = _stack(x, _basic_block, filters, blocks, 1 if stage == 0 else 2, f"conv{stage + 2}", stage > 0)
        return x

    return _build(body, model_name, include_top, weights, input_tensor, input_shape, pooling, classes,
                  classifier_activation, name, default_size=224, min_size=32)


# ---------------------------------------------------------------------- public models
def ResNet50(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
             classes=1000, classifier_activation="softmax", name="resnet50"):
    """ResNet-50 (He et al., 2015) with ``keras.applications.ResNet50``'s exact architecture.

    Same layers, layer names, weight order and parameter count (25,636,712 with the
    top) as Keras, so weights move between the two with ``get_weights``/``set_weights``.
    Convolutions have biases and BatchNormalization uses ``epsilon=1.001e-5``, as in
    Keras; the stride sits on the first 1x1 convolution of each block (ResNet v1).

    Layer names: ``conv1_pad``, ``conv1_conv``, ``conv1_bn``, ``conv1_relu``,
    ``pool1_pad``, ``pool1_pool``, then for stage ``s`` in 2..5 and block ``b``:
    ``conv{s}_block{b}_{0_conv,0_bn}`` (projection shortcut, first block only),
    ``..._{1,2,3}_conv``, ``..._{1,2,3}_bn``, ``..._{1,2}_relu``, ``..._add``,
    ``..._out``; then ``avg_pool``/``max_pool`` and ``predictions``.

    Args:
        include_top: add global average pooling and the ``predictions`` Dense layer.
            Default True.
        weights: None (random initialization, the default) or the path of an existing
            ``.weights.safetensors`` / ``.lamina`` file to load. ``"imagenet"`` is
            refused with a ValueError: lamina downloads nothing. (Keras defaults to
            ``"imagenet"``.)
        input_tensor: optional symbolic tensor (from ``lamina.Input``) to use as the image
            input; the model's inputs are the ``Input`` tensors it depends on.
        input_shape: image shape without the batch axis, default ``(224, 224, 3)``
            with the top and ``(None, None, 3)`` without. Height and width must be
            at least 32.
        pooling: with ``include_top=False``: None (4D feature map), ``"avg"`` or
            ``"max"`` (global pooling to a 2D tensor). Default None.
        classes: number of classes of the top layer. Default 1000.
        classifier_activation: activation of the top layer; None gives logits.
            Default ``"softmax"``.
        name: model name. Default ``"resnet50"``.

    Returns:
        A functional ``Model``.

    Example:
    >>> model = ResNet50(include_top=False, input_shape=(32, 32, 3), pooling="avg")
    >>> model.output_shape, model.count_params()
    ((None, 2048), 23587712)
    """
    return _bottleneck_resnet((3, 4, 6, 3), "ResNet50", include_top, weights, input_tensor, input_shape,
                              pooling, classes, classifier_activation, name)


def ResNet101(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
              classes=1000, classifier_activation="softmax", name="resnet101"):
    """ResNet-101 with ``keras.applications.ResNet101``'s architecture (23 blocks in stage 4).

    Arguments and layer names as ``ResNet50``.

    Example:
    >>> ResNet101(include_top=False, input_shape=(32, 32, 3)).output_shape  # doctest: +SKIP
    (None, 1, 1, 2048)
    """
    return _bottleneck_resnet((3, 4, 23, 3), "ResNet101", include_top, weights, input_tensor, input_shape,
                              pooling, classes, classifier_activation, name)


def ResNet152(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
              classes=1000, classifier_activation="softmax", name="resnet152"):
    """ResNet-152 with ``keras.applications.ResNet152``'s architecture (8 and 36 blocks in stages 3, 4).

    Arguments and layer names as ``ResNet50``.

    Example:
    >>> ResNet152(include_top=False, input_shape=(32, 32, 3)).output_shape  # doctest: +SKIP
    (None, 1, 1, 2048)
    """
    return _bottleneck_resnet((3, 8, 36, 3), "ResNet152", include_top, weights, input_tensor, input_shape,
                              pooling, classes, classifier_activation, name)


def ResNet18(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
             classes=1000, classifier_activation="softmax", name="resnet18"):
    """ResNet-18 (He et al., 2015): basic blocks, [2, 2, 2, 2] per stage. Keras has none.

    The layout is torchvision's ``resnet18``: bias-free convolutions initialized as
    torchvision does (He normal, fan-out: ``VarianceScaling(2.0, "fan_out",
    "untruncated_normal")``), BatchNormalization with ``epsilon=1e-5``, the stride on the first
    3x3 convolution of a block, symmetric zero padding, and a 1x1 projection
    shortcut (convolution + BN) where a stage halves the size and doubles the
    channels. With 1000 classes it has 11,689,512 trainable parameters, exactly
    torchvision's count, plus 9,600 non-trainable BN moving statistics (which
    ``count_params`` includes, as in Keras): 11,699,112 in all.

    Layer names follow Keras's ResNet50: the stem ``conv1_pad``, ``conv1_conv``,
    ``conv1_bn``, ``conv1_relu``, ``pool1_pad``, ``pool1_pool``; then for stage
    ``s`` in 2..5 and block ``b``: ``conv{s}_block{b}_0_conv``/``_0_bn`` (projection
    shortcut), ``_1_pad`` (before a strided conv), ``_1_conv``, ``_1_bn``,
    ``_1_relu``, ``_2_conv``, ``_2_bn``, ``_add``, ``_out``; then ``avg_pool`` /
    ``max_pool`` and ``predictions``.

    Args:
        include_top: add global average pooling and the ``predictions`` Dense layer.
            Default True.
        weights: None (default) or the path of an existing ``.weights.safetensors`` /
            ``.lamina`` file; ``"imagenet"`` raises ValueError (lamina downloads nothing).
        input_tensor: optional symbolic tensor to use as the image input.
        input_shape: image shape without the batch axis, default ``(224, 224, 3)``
            with the top and ``(None, None, 3)`` without; at least 32x32.
        pooling: None, ``"avg"`` or ``"max"`` when ``include_top=False``. Default None.
        classes: number of classes of the top layer. Default 1000.
        classifier_activation: activation of the top layer. Default ``"softmax"``.
        name: model name. Default ``"resnet18"``.

    Example:
    >>> model = ResNet18(include_top=False, input_shape=(64, 64, 3))
    >>> model.output_shape
    (None, 2, 2, 512)
    """
    return _basic_resnet((2, 2, 2, 2), "ResNet18", include_top, weights, input_tensor, input_shape,
                         pooling, classes, classifier_activation, name)


def ResNet34(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
             classes=1000, classifier_activation="softmax", name="resnet34"):
    """ResNet-34 (He et al., 2015): basic blocks, [3, 4, 6, 3] per stage. Keras has none.

    Layout and layer names as ``ResNet18``. With 1000 classes it has 21,797,672
    trainable parameters (torchvision's count) plus 17,024 BN moving statistics:
    21,814,696 in all.

    Args: as ``ResNet18`` (``name`` defaults to ``"resnet34"``).

    Example:
    >>> ResNet34(include_top=False, input_shape=(32, 32, 3), pooling="max").output_shape
    (None, 512)
    """
    return _basic_resnet((3, 4, 6, 3), "ResNet34", include_top, weights, input_tensor, input_shape,
                         pooling, classes, classifier_activation, name)


def ResNetCIFAR(depth=20, include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                classes=10, classifier_activation="softmax", name=None):
    """The CIFAR ResNet of He et al. (2015, section 4.2): ``depth = 6n + 2`` layers.

    A 3x3 convolution with 16 filters, then three stages of ``n`` basic blocks with
    16, 32 and 64 filters (the last two start with stride 2), global average
    pooling and the classifier. Where a stage changes the shape, the shortcut is a
    1x1 convolution + BN (the paper's option B); the paper's CIFAR runs used
    zero-padded identity shortcuts (option A), which have no weights, so this
    network has a few more parameters (ResNet-20: 272,474 trainable against the
    paper's 0.27M). Convolutions are bias-free, initialized as in ``ResNet18``;
    BN uses ``epsilon=1e-5``. Layer names: ``conv1_conv``, ``conv1_bn``,
    ``conv1_relu``, then ``conv{2,3,4}_block{b}_...`` as in ``ResNet18``.

    Args:
        depth: number of weighted layers, ``6n + 2`` with ``n >= 1`` (8, 14, 20, 32,
            44, 56, 110, ...). Default 20.
        include_top: add global average pooling and the ``predictions`` layer. Default True.
        weights: None (default) or the path of an existing local weights file.
        input_tensor: optional symbolic tensor to use as the image input.
        input_shape: image shape without the batch axis, default ``(32, 32, 3)``
            with the top and ``(None, None, 3)`` without; at least 8x8.
        pooling: None, ``"avg"`` or ``"max"`` when ``include_top=False``. Default None.
        classes: number of classes. Default 10.
        classifier_activation: activation of the top layer. Default ``"softmax"``.
        name: model name. Default ``"resnet{depth}_cifar"``.

    Example:
    >>> model = ResNetCIFAR(depth=8, input_shape=(32, 32, 3), classes=10)
    >>> model.name, model.output_shape
    ('resnet8_cifar', (None, 10))
    """
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"ResNetCIFAR expects depth = 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...); "
            f"received depth={depth!r}."
        )
    blocks = (depth - 2) // 6

    def body(x):
        x = Conv2D(16, 3, padding="same", use_bias=False, kernel_initializer=_HE_FAN_OUT, name="conv1_conv")(x)
        x = BatchNormalization(axis=_bn_axis(), epsilon=_TORCH_EPSILON, name="conv1_bn")(x)
        x = Activation("relu", name="conv1_relu")(x)
        for stage, filters in enumerate((16, 32, 64)):
            x = _stack(x, _basic_block, filters, blocks, 1 if stage == 0 else 2, f"conv{stage + 2}", stage > 0)
        return x

    return _build(body, "ResNetCIFAR", include_top, weights, input_tensor, input_shape, pooling, classes,
                  classifier_activation, name or f"resnet{depth}_cifar", default_size=32, min_size=8)


def preprocess_input(x, data_format=None):
    """Keras's ResNet preprocessing ("caffe" mode): RGB to BGR, minus the ImageNet channel means.

    Takes pixel values in [0, 255] and returns a new array or tensor (Keras modifies
    float NumPy inputs in place; lamina never does).

    Args:
        x: NumPy array or torch tensor of images, channels last (or first, with
            ``data_format="channels_first"``).
        data_format: None (``image_data_format()``), ``"channels_last"`` or ``"channels_first"``.

    Example:
    >>> import numpy as np
    >>> preprocess_input(np.array([[[10.0, 20.0, 30.0]]]))
    array([[[ -73.939, -96.779, -113.68 ]]])
    """
    data_format = data_format or config.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            f"preprocess_input expects data_format 'channels_last' or 'channels_first'; "
            f"received data_format={data_format!r}."
        )
    channel_axis = -1 if data_format == "channels_last" else (0 if x.ndim == 3 else 1)
    mean_shape = [1] * x.ndim
    mean_shape[channel_axis] = 3
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            x = x.to(config.torch_dtype())
        mean = torch.tensor(_CAFFE_MEAN, dtype=x.dtype, device=x.device).reshape(mean_shape)
        return x.flip(channel_axis) - mean
    import numpy as np

    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(config.floatx())
    return np.flip(x, axis=channel_axis) - np.asarray(_CAFFE_MEAN, dtype=x.dtype).reshape(mean_shape)
