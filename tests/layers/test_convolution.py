"""Tests for lamina.layers.convolution against Keras 3 (same weights, random inputs), closed
forms, torch.nn modules, and the error messages for bad arguments and shapes."""

import json
import re

import numpy as np
import pytest
import torch

import lamina
from lamina import registry
from lamina.layers.convolution import (
    Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Conv3D, Conv3DTranspose, Convolution2D,
    DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D, _transpose_plan,
)

CLASSES = {
    cls.__name__: cls for cls in (Conv1D, Conv2D, Conv3D, Conv1DTranspose, Conv2DTranspose, Conv3DTranspose,
                                  SeparableConv1D, SeparableConv2D, DepthwiseConv1D, DepthwiseConv2D)
}
RANK = {name: int(re.search(r"(\d)D", name).group(1)) for name in CLASSES}


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _input(name, spatial, channels, data_format, seed=0):
    rng = np.random.default_rng(seed)
    shape = (2, *spatial, channels) if data_format == "channels_last" else (2, channels, *spatial)
    return rng.normal(size=shape).astype("float32")


def _check_against_keras(keras, name, spatial, channels, atol=1e-5, **kwargs):
    """Build ``name`` in lamina and Keras with ``kwargs``, share weights, compare everything."""
    data_format = kwargs.get("data_format", "channels_last")
    x = _input(name, spatial, channels, data_format)
    if "Depthwise" not in name and "Separable" not in name:
        kwargs.setdefault("bias_initializer", "random_normal")
    theirs = getattr(keras.layers, name)(**kwargs)
    theirs.build(x.shape)
    ours = CLASSES[name](**kwargs)
    ours.build(x.shape)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    # Random biases too, so that zero-extended borders of transposed convs are checked.
    weights = [np.random.default_rng(i).normal(size=w.shape).astype("float32")
               for i, w in enumerate(theirs.get_weights())]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    expected = np.asarray(keras.ops.convert_to_numpy(theirs(x)))
    out = _np(ours(x))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=atol)
    assert ours.count_params() == theirs.count_params()
    batchless = (None, *x.shape[1:])
    assert ours.compute_output_shape(batchless) == tuple(theirs.compute_output_shape(batchless))
    assert ours.compute_output_shape(x.shape) == out.shape
    return ours, out


# ------------------------------------------------------------------ regular convolutions
CONV_CASES = [
    # (spatial sizes, channels, kwargs)
    ((7,), 3, dict(filters=4, kernel_size=3)),
    ((8,), 3, dict(filters=4, kernel_size=2, padding="same")),
    ((9,), 3, dict(filters=2, kernel_size=4, padding="same", strides=2)),
    ((8,), 4, dict(filters=6, kernel_size=3, padding="same", strides=3, groups=2)),
    ((10,), 2, dict(filters=3, kernel_size=3, padding="causal", dilation_rate=2)),
    ((9,), 2, dict(filters=3, kernel_size=4, padding="causal", strides=2)),
    ((11,), 2, dict(filters=3, kernel_size=3, dilation_rate=3, activation="relu", use_bias=False)),
]
CONV2D_CASES = [
    ((7, 6), 3, dict(filters=4, kernel_size=3)),
    ((7, 8), 3, dict(filters=4, kernel_size=(2, 3), padding="same")),
    ((7, 7), 3, dict(filters=5, kernel_size=3, padding="same", strides=2)),
    ((8, 8), 3, dict(filters=5, kernel_size=3, padding="same", strides=2)),
    ((9, 6), 3, dict(filters=5, kernel_size=(4, 2), padding="same", strides=(2, 3))),
    ((6, 7), 4, dict(filters=6, kernel_size=3, strides=(1, 2), groups=2)),
    ((9, 9), 6, dict(filters=6, kernel_size=2, padding="same", groups=3, dilation_rate=2)),
    ((8, 9), 2, dict(filters=3, kernel_size=3, dilation_rate=(2, 3), activation="tanh")),
    ((5, 5), 3, dict(filters=4, kernel_size=1, strides=3, padding="same", use_bias=False)),
]
CONV3D_CASES = [
    ((5, 4, 6), 2, dict(filters=3, kernel_size=3)),
    ((5, 6, 7), 2, dict(filters=3, kernel_size=(2, 3, 2), padding="same", strides=2)),
    ((4, 5, 4), 4, dict(filters=4, kernel_size=2, padding="same", groups=2, dilation_rate=2)),
]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("spatial, channels, kwargs", CONV_CASES)
def test_conv1d_matches_keras(keras, spatial, channels, kwargs, data_format):
    _check_against_keras(keras, "Conv1D", spatial, channels, data_format=data_format, **kwargs)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("spatial, channels, kwargs", CONV2D_CASES)
def test_conv2d_matches_keras(keras, spatial, channels, kwargs, data_format):
    _check_against_keras(keras, "Conv2D", spatial, channels, data_format=data_format, **kwargs)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("spatial, channels, kwargs", CONV3D_CASES)
def test_conv3d_matches_keras(keras, spatial, channels, kwargs, data_format):
    _check_against_keras(keras, "Conv3D", spatial, channels, data_format=data_format, **kwargs)


@pytest.mark.parametrize("size", [5, 6, 7, 8])
@pytest.mark.parametrize("kernel_size, strides", [(2, 1), (2, 2), (3, 2), (4, 3), (5, 2), (4, 1)])
def test_conv2d_same_padding_matches_tensorflow_rule(size, kernel_size, strides):
    # TF's rule: total = max((ceil(n/s) - 1) * s + k - n, 0), the odd pixel at the END.
    layer = Conv2D(1, kernel_size, strides=strides, padding="same", use_bias=False)
    x = torch.randn(1, size, size + 1, 1)
    out = layer(x)
    kernel = torch.as_tensor(layer.get_weights()[0]).permute(3, 2, 0, 1)
    pads = []
    for n in (size + 1, size):  # F.pad order: last axis first
        total = max((-(-n // strides) - 1) * strides + kernel_size - n, 0)
        pads += [total // 2, total - total // 2]
    reference = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x.permute(0, 3, 1, 2), pads), kernel, stride=strides).permute(0, 2, 3, 1)
    assert out.shape[1:3] == (-(-size // strides), -(-(size + 1) // strides))
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)


def test_conv1d_causal_output_ignores_the_future():
    layer = Conv1D(2, 3, padding="causal", dilation_rate=2)
    x = torch.randn(1, 10, 3)
    changed = x.clone()
    changed[:, 6:] += 1.0
    torch.testing.assert_close(layer(x)[:, :6], layer(changed)[:, :6])
    assert not torch.allclose(layer(x)[:, 6], layer(changed)[:, 6])


def test_conv1d_closed_form():
    layer = Conv1D(1, 2, strides=2, use_bias=False)
    layer.build((None, 5, 1))
    layer.set_weights([np.array([[[1.0]], [[10.0]]], "float32")])
    out = layer(torch.tensor([[[1.0], [2.0], [3.0], [4.0], [5.0]]]))
    assert out.flatten().tolist() == [21.0, 43.0]


@pytest.mark.parametrize("padding, torch_padding", [("valid", 0), ("same", 1)])
def test_conv2d_weights_copy_one_to_one_from_torch_conv2d(padding, torch_padding):
    module = torch.nn.Conv2d(4, 6, 3, padding=torch_padding, groups=2)
    layer = Conv2D(6, 3, padding=padding, groups=2, data_format="channels_first")
    layer.build((None, 4, 8, 8))
    layer.load_state_dict({"kernel": module.weight, "bias": module.bias})
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(layer(x), module(x))
    np.testing.assert_array_equal(layer.get_weights()[0], module.weight.detach().numpy().transpose(2, 3, 1, 0))


def test_conv2d_channels_last_output_is_contiguous_nhwc():
    layer = Conv2D(4, 3, padding="same")
    x = torch.randn(2, 8, 8, 3)
    out = layer(x)
    # The output is a permuted view of torch's channels_last result: contiguous NHWC.
    assert out.is_contiguous()
    assert layer.kernel.shape == (4, 3, 3, 3)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN's layout choice")
def test_conv2d_one_pixel_input_keeps_the_kernel_layout():
    # A 1x1 NHWC input's permuted view has channels_last strides; oneDNN then converted the
    # kernel on every pass (ResNet-18's last stage at 32x32 input: ~8% of its step).
    layer = Conv2D(32, 3, padding="same", use_bias=False)
    layer.build((None, 1, 1, 32))
    x = torch.randn(4, 1, 1, 32, requires_grad=True)
    expected = torch.nn.functional.conv2d(x.detach().reshape(4, 32, 1, 1), layer.kernel.detach(),
                                          padding=1).reshape(4, 1, 1, 32)
    with torch.profiler.profile(record_shapes=True) as profile:
        out = layer(x)
        out.sum().backward()
    kernel_copies = [event for event in profile.events()
                     if event.name == "aten::copy_" and list(layer.kernel.shape) in event.input_shapes]
    assert kernel_copies == []
    torch.testing.assert_close(out, expected)
    assert x.grad.shape == x.shape and layer.kernel.grad.is_contiguous()


def test_conv2d_default_data_format_follows_config():
    lamina.config.set_image_data_format("channels_first")
    assert Conv2D(2, 3).data_format == "channels_first"
    assert Conv2D(2, 3)(torch.zeros(1, 3, 5, 5)).shape == (1, 2, 3, 3)


def test_conv2d_casts_integer_and_numpy_inputs():
    layer = Conv2D(1, 2, kernel_initializer="ones")
    out = layer(np.ones((1, 3, 3, 1), dtype="int64"))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full((1, 2, 2, 1), 4.0))


def test_conv2d_gradients_flow():
    layer = Conv2D(2, 3, strides=2, padding="same")
    layer(torch.randn(2, 7, 7, 3)).sum().backward()
    assert layer.kernel.grad is not None and layer.bias.grad is not None


# ------------------------------------------------------------------ transposed convolutions
TRANSPOSE_CASES = {
    1: [
        ((5,), 3, dict(filters=2, kernel_size=3)),
        ((5,), 3, dict(filters=2, kernel_size=3, strides=2)),
        ((6,), 3, dict(filters=2, kernel_size=3, strides=2, padding="same")),
        ((5,), 3, dict(filters=2, kernel_size=4, strides=2, padding="same")),
        ((5,), 3, dict(filters=2, kernel_size=2, strides=3)),
        ((5,), 3, dict(filters=2, kernel_size=1, strides=3, padding="same")),
        ((5,), 2, dict(filters=3, kernel_size=3, strides=3, output_padding=2)),
        ((5,), 2, dict(filters=3, kernel_size=3, strides=2, padding="same", output_padding=1)),
        ((5,), 2, dict(filters=3, kernel_size=4, strides=3, padding="same", output_padding=0)),
        ((7,), 2, dict(filters=3, kernel_size=3, dilation_rate=2, padding="same")),
        ((7,), 2, dict(filters=3, kernel_size=2, dilation_rate=3, activation="relu", use_bias=False)),
    ],
    2: [
        ((4, 5), 3, dict(filters=2, kernel_size=3)),
        ((4, 5), 3, dict(filters=2, kernel_size=3, strides=2, padding="same")),
        ((5, 4), 3, dict(filters=2, kernel_size=(2, 3), strides=(2, 3), padding="same")),
        ((4, 4), 3, dict(filters=2, kernel_size=3, strides=2, output_padding=1)),
        ((3, 5), 3, dict(filters=2, kernel_size=(3, 4), strides=(3, 2), padding="same", output_padding=(2, 1))),
        ((5, 5), 2, dict(filters=3, kernel_size=3, dilation_rate=2)),
    ],
    3: [
        ((3, 4, 3), 2, dict(filters=2, kernel_size=2, strides=2)),
        ((3, 3, 4), 2, dict(filters=2, kernel_size=3, strides=(2, 1, 2), padding="same", output_padding=(1, 0, 0))),
    ],
}


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("rank, spatial, channels, kwargs",
                         [(r, *case) for r, cases in TRANSPOSE_CASES.items() for case in cases])
def test_conv_transpose_matches_keras(keras, rank, spatial, channels, kwargs, data_format):
    _check_against_keras(keras, f"Conv{rank}DTranspose", spatial, channels, data_format=data_format, **kwargs)


def test_conv_transpose_plan_is_valid_torch_for_every_keras_setting():
    # torch needs output_padding < max(stride, dilation); check the plan over a grid of
    # settings Keras accepts and compare the output size with Keras's formula.
    for k in range(1, 7):
        for s in range(1, 5):
            for d in range(1, 4) if s == 1 else (1,):
                for padding in ("valid", "same"):
                    for op in (None, *range(s)):
                        (pad,), (extra,), crop = _transpose_plan((k,), (s,), (d,), padding,
                                                                 None if op is None else (op,))
                        assert 0 <= extra < max(s, d) and pad >= 0
                        layer = Conv1DTranspose(1, k, strides=s, dilation_rate=d, padding=padding,
                                                output_padding=op)
                        out = layer(torch.zeros(1, 4, 1))
                        assert out.shape == layer.compute_output_shape((1, 4, 1)), (k, s, d, padding, op)


def test_conv1d_transpose_closed_form():
    layer = Conv1DTranspose(1, 3, strides=2, padding="same", use_bias=False)
    layer.build((None, 2, 1))
    layer.set_weights([np.array([1.0, 10.0, 100.0], "float32").reshape(3, 1, 1)])
    # Full output of [1, 2]: [1, 10, 102, 20, 200]. "same" keeps input * strides = 4 values,
    # cropping at the end: the transpose of a "same" conv, which pads the end of a length-4 input.
    out = layer(torch.tensor([[[1.0], [2.0]]]))
    assert out.flatten().tolist() == [1.0, 10.0, 102.0, 20.0]


def test_conv2d_transpose_matches_torch_module():
    module = torch.nn.ConvTranspose2d(3, 4, 3, stride=2)
    layer = Conv2DTranspose(4, 3, strides=2, data_format="channels_first")
    layer.build((None, 3, 5, 5))
    layer.load_state_dict({"kernel": module.weight, "bias": module.bias})
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(layer(x), module(x))
    assert layer.get_weights()[0].shape == (3, 3, 4, 3)


def test_conv_transpose_rejects_output_padding_not_below_strides():
    with pytest.raises(ValueError, match="output_padding"):
        Conv2DTranspose(2, 3, strides=2, output_padding=2)


# ------------------------------------------------------------------ depthwise / separable
DEPTHWISE_CASES = {
    1: [
        ((7,), 3, dict(kernel_size=3)),
        ((8,), 3, dict(kernel_size=2, padding="same", depth_multiplier=2)),
        ((9,), 2, dict(kernel_size=4, padding="same", strides=2, depth_multiplier=3)),
        ((11,), 2, dict(kernel_size=3, dilation_rate=2, activation="relu")),
    ],
    2: [
        ((6, 7), 3, dict(kernel_size=3)),
        ((7, 7), 3, dict(kernel_size=3, padding="same", strides=2, depth_multiplier=2)),
        ((8, 6), 2, dict(kernel_size=(2, 3), padding="same", dilation_rate=2, use_bias=False)),
        ((9, 8), 2, dict(kernel_size=3, strides=(2, 3), depth_multiplier=2)),
        # Unlike Conv2D, Keras allows strides and dilation together here.
        ((9, 8), 2, dict(kernel_size=3, strides=2, dilation_rate=2, padding="same")),
    ],
}
SEPARABLE_CASES = {
    1: [
        ((7,), 3, dict(filters=4, kernel_size=3)),
        ((9,), 3, dict(filters=4, kernel_size=4, padding="same", strides=2, depth_multiplier=2)),
        ((10,), 2, dict(filters=5, kernel_size=3, padding="same", dilation_rate=2, activation="relu")),
    ],
    2: [
        ((6, 7), 3, dict(filters=4, kernel_size=3)),
        ((7, 7), 3, dict(filters=4, kernel_size=3, padding="same", strides=2, depth_multiplier=2)),
        ((8, 8), 2, dict(filters=3, kernel_size=2, padding="same", dilation_rate=2, use_bias=False)),
    ],
}


def _bias_kwargs(kwargs):
    return dict(kwargs, bias_initializer="random_normal") if kwargs.get("use_bias", True) else kwargs


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("rank, spatial, channels, kwargs",
                         [(r, *case) for r, cases in DEPTHWISE_CASES.items() for case in cases])
def test_depthwise_conv_matches_keras(keras, rank, spatial, channels, kwargs, data_format):
    _check_against_keras(keras, f"DepthwiseConv{rank}D", spatial, channels, data_format=data_format,
                         **_bias_kwargs(kwargs))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("rank, spatial, channels, kwargs",
                         [(r, *case) for r, cases in SEPARABLE_CASES.items() for case in cases])
def test_separable_conv_matches_keras(keras, rank, spatial, channels, kwargs, data_format):
    _check_against_keras(keras, f"SeparableConv{rank}D", spatial, channels, data_format=data_format,
                         **_bias_kwargs(kwargs))


def test_depthwise_conv2d_channel_order_closed_form():
    layer = DepthwiseConv2D(1, depth_multiplier=2, use_bias=False)
    layer.build((None, 1, 1, 2))
    # kernel[0, 0, c, m] = 10 * c + m + 1: output channel c * 2 + m.
    layer.set_weights([np.array([[[[1.0, 2.0], [11.0, 12.0]]]], "float32")])
    out = layer(torch.tensor([[[[1.0, 100.0]]]]))
    assert out.flatten().tolist() == [1.0, 2.0, 1100.0, 1200.0]


def test_depthwise_conv2d_multiplier_one_is_torch_grouped_conv():
    module = torch.nn.Conv2d(3, 3, 3, groups=3)
    layer = DepthwiseConv2D(3, data_format="channels_first")
    layer.build((None, 3, 6, 6))
    layer.load_state_dict({"kernel": module.weight, "bias": module.bias})
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(layer(x), module(x))


def test_separable_conv2d_get_weights_order_and_names(keras):
    ours = SeparableConv2D(5, 3, depth_multiplier=2)
    ours.build((None, 8, 8, 3))
    theirs = keras.layers.SeparableConv2D(5, 3, depth_multiplier=2)
    theirs.build((None, 8, 8, 3))
    assert [w.shape for w in ours.get_weights()] == [(3, 3, 3, 2), (1, 1, 6, 5), (5,)]
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    assert [n for n, _ in ours.named_parameters()] == ["depthwise_kernel", "pointwise_kernel", "bias"]


# ------------------------------------------------------------------ initialization
@pytest.mark.parametrize("layer, shape, fan_in, fan_out", [
    (Conv2D(8, 3), (None, 9, 9, 4), 36, 72),
    (Conv2D(8, 3, groups=2), (None, 9, 9, 4), 18, 72),
    (Conv2DTranspose(8, 3), (None, 9, 9, 4), 72, 36),
    (DepthwiseConv2D(3, depth_multiplier=2), (None, 9, 9, 4), 36, 18),
])
def test_conv_glorot_uses_keras_fans(layer, shape, fan_in, fan_out):
    layer.build(shape)
    kernel = layer.get_weights()[0]
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.8 * limit


# ------------------------------------------------------------------ config
# Keys only Keras has: lamina has no LoRA (Keras adds them to configs only when set).
CONFIG_CASES = [
    ("Conv1D", dict(filters=4, kernel_size=3, padding="causal", dilation_rate=2, groups=2)),
    ("Conv2D", dict(filters=4, kernel_size=(3, 2), strides=2, padding="same", activation="relu",
                    kernel_regularizer="l2", bias_constraint="non_neg", activity_regularizer="l1")),
    ("Conv3D", dict(filters=2, kernel_size=3, data_format="channels_first", use_bias=False)),
    ("Conv1DTranspose", dict(filters=2, kernel_size=3, strides=2, output_padding=1)),
    ("Conv2DTranspose", dict(filters=2, kernel_size=3, padding="same", kernel_initializer="he_normal")),
    ("Conv3DTranspose", dict(filters=2, kernel_size=2, strides=2)),
    ("SeparableConv1D", dict(filters=3, kernel_size=3, depth_multiplier=2, pointwise_regularizer="l2")),
    ("SeparableConv2D", dict(filters=3, kernel_size=3, depthwise_constraint="max_norm")),
    ("DepthwiseConv1D", dict(kernel_size=3, depth_multiplier=2, depthwise_regularizer="l1")),
    ("DepthwiseConv2D", dict(kernel_size=3, padding="same", depthwise_initializer="ones")),
]


def _jsonable(value):
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("name, kwargs", CONFIG_CASES)
def test_conv_get_config_matches_keras(keras, name, kwargs):
    ours = CLASSES[name](name="x", **kwargs).get_config()
    theirs = keras.layers.__dict__[name](name="x", **kwargs).get_config()
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        if key == "dtype":
            assert ours[key] == "float32"
        elif isinstance(value, dict):
            assert ours[key]["class_name"] == value["class_name"], key
            assert ours[key]["config"] == pytest.approx(value["config"]), key
        else:
            assert _jsonable(ours[key]) == _jsonable(value), key


@pytest.mark.parametrize("name, kwargs", CONFIG_CASES)
def test_conv_config_round_trip_keeps_predictions(name, kwargs):
    layer = CLASSES[name](**kwargs)
    rank = RANK[name]
    shape = (2, *([6] * rank), 4) if kwargs.get("data_format") != "channels_first" else (2, 4, *([6] * rank))
    x = torch.randn(shape)
    out = layer(x)
    clone = registry.get("layer", _jsonable(registry.serialize("layer", layer)))
    assert type(clone) is type(layer)
    assert _jsonable(clone.get_config()) == _jsonable(layer.get_config())
    clone.build(shape)
    clone.set_weights(layer.get_weights())
    torch.testing.assert_close(clone(x), out)


@pytest.mark.parametrize("name, kwargs", CONFIG_CASES)
def test_conv_from_keras_config(keras, name, kwargs):
    config = keras.layers.__dict__[name](**kwargs).get_config()
    config.pop("dtype")
    layer = CLASSES[name].from_config(config)
    for key, value in config.items():
        if not isinstance(value, dict):
            assert _jsonable(layer.get_config()[key]) == _jsonable(value), key


@pytest.mark.parametrize("alias, cls", [
    ("Convolution1D", Conv1D), ("Convolution2D", Conv2D), ("Convolution3D", Conv3D),
    ("Convolution2DTranspose", Conv2DTranspose), ("SeparableConvolution2D", SeparableConv2D),
    ("Conv2D", Conv2D), ("DepthwiseConv1D", DepthwiseConv1D),
])
def test_conv_registry_aliases(alias, cls):
    assert registry.lookup_class("layer", alias) is cls
    assert Convolution2D is Conv2D


def test_conv_default_names_match_keras(keras):
    for name, cls in CLASSES.items():
        kwargs = {"kernel_size": 3} if "Depthwise" in name else {"filters": 2, "kernel_size": 3}
        strip = "_0123456789"
        assert cls(**kwargs).name.rstrip(strip) == getattr(keras.layers, name)(**kwargs).name.rstrip(strip)


# ------------------------------------------------------------------ regularizers / constraints
def test_conv_regularization_losses_match_keras(keras):
    kwargs = dict(kernel_regularizer="l2", bias_regularizer="l1", activity_regularizer="l2")
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")
    ours = Conv2D(4, 3, bias_initializer="ones", **kwargs)
    ours(x)
    theirs = keras.layers.Conv2D(4, 3, bias_initializer="ones", **kwargs)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    theirs(x)
    ours_losses = sorted(float(l.detach()) for l in ours.losses)
    theirs_losses = sorted(float(keras.ops.convert_to_numpy(l)) for l in theirs.losses)
    np.testing.assert_allclose(ours_losses, theirs_losses, rtol=1e-5)


def test_separable_pointwise_constraint_applied_in_keras_layout(keras):
    ours = SeparableConv2D(4, 3, pointwise_constraint="max_norm", depth_multiplier=2)
    ours.build((None, 6, 6, 3))
    weights = [w * 10 for w in ours.get_weights()]
    ours.set_weights(weights)
    ours._apply_constraints()
    theirs = keras.constraints.MaxNorm()
    expected = np.asarray(keras.ops.convert_to_numpy(theirs(keras.ops.convert_to_tensor(weights[1]))))
    np.testing.assert_allclose(ours.get_weights()[1], expected, rtol=1e-5)
    np.testing.assert_array_equal(ours.get_weights()[0], weights[0])


# ------------------------------------------------------------------ errors
def test_conv2d_rejects_3d_input_naming_layer_and_shape():
    layer = Conv2D(2, 3, name="c2")
    with pytest.raises(ValueError, match=r'"c2".*expected ndim=4, found ndim=3.*\(2, 8, 3\)'):
        layer(torch.zeros(2, 8, 3))


def test_conv2d_rejects_3d_input_after_build():
    layer = Conv2D(2, 3, name="c2b")
    layer(torch.zeros(1, 5, 5, 3))
    with pytest.raises(ValueError, match="c2b.*ndim=4"):
        layer(torch.zeros(5, 5, 3))


@pytest.mark.parametrize("name, kwargs, shape", [
    ("Conv2D", dict(filters=2, kernel_size=5), (None, 4, 8, 3)),
    ("Conv1D", dict(filters=2, kernel_size=3, dilation_rate=3), (None, 6, 3)),
    ("DepthwiseConv2D", dict(kernel_size=(2, 9)), (None, 8, 8, 3)),
    ("SeparableConv1D", dict(filters=2, kernel_size=4), (None, 3, 1)),
])
def test_conv_kernel_larger_than_input_raises(name, kwargs, shape):
    layer = CLASSES[name](name="big", **kwargs)
    with pytest.raises(ValueError, match=r'"big".*kernel_size=.*output size along spatial axis'):
        layer.compute_output_shape(shape)
    with pytest.raises(ValueError, match=r'"big"'):
        layer.build(shape)
    assert not layer.built


def test_conv_kernel_larger_than_input_raises_at_call_after_build():
    layer = Conv2D(2, 3, name="later")
    layer(torch.zeros(1, 8, 8, 1))
    with pytest.raises(ValueError, match=r'"later".*\(1, 2, 2, 1\)'):
        layer(torch.zeros(1, 2, 2, 1))


def test_conv_kernel_larger_than_input_raises_symbolically():
    with pytest.raises(ValueError, match="output size"):
        Conv2D(2, 5)(lamina.Input((4, 4, 1)))


@pytest.mark.parametrize("filters", [0, -2, 2.5, "4", None])
def test_conv_rejects_bad_filters(filters):
    with pytest.raises(ValueError, match="filters"):
        Conv2D(filters, 3)


def test_conv_rejects_filters_not_divisible_by_groups():
    with pytest.raises(ValueError, match="groups=3, filters=4"):
        Conv2D(4, 3, groups=3)


def test_conv_rejects_channels_not_divisible_by_groups():
    layer = Conv2D(4, 3, groups=2, name="grp")
    with pytest.raises(ValueError, match=r"groups=2.*3 channels.*grp"):
        layer(torch.zeros(1, 5, 5, 3))


def test_conv_rejects_wrong_channel_count_after_build():
    layer = Conv2D(4, 3, name="chan")
    layer(torch.zeros(1, 5, 5, 3))
    with pytest.raises(ValueError, match="chan.*axis -1.*value 3"):
        layer(torch.zeros(1, 5, 5, 2))


@pytest.mark.parametrize("cls, kwargs, match", [
    (Conv2D, dict(filters=2, kernel_size=0), "kernel_size"),
    (Conv2D, dict(filters=2, kernel_size=(3, 3, 3)), "kernel_size"),
    (Conv2D, dict(filters=2, kernel_size=3, strides=0), "strides"),
    (Conv2D, dict(filters=2, kernel_size=3, padding="causal"), "padding"),
    (Conv2D, dict(filters=2, kernel_size=3, padding="full"), "padding"),
    (Conv2D, dict(filters=2, kernel_size=3, data_format="nhwc"), "data_format"),
    (Conv2D, dict(filters=2, kernel_size=3, strides=2, dilation_rate=2), "dilation_rate"),
    (Conv2D, dict(filters=2, kernel_size=3, groups=0), "groups"),
    (Conv1DTranspose, dict(filters=2, kernel_size=3, padding="causal"), "padding"),
    (DepthwiseConv1D, dict(kernel_size=3, padding="causal"), "padding"),
    (DepthwiseConv2D, dict(kernel_size=3, depth_multiplier=0), "depth_multiplier"),
    (SeparableConv2D, dict(filters=0, kernel_size=3), "filters"),
    (Conv2D, dict(filters=2, kernel_size=3, lora_rank=4), "lora_rank"),
])
def test_conv_rejects_bad_arguments(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_conv_accepts_padding_case_insensitively_and_lists():
    layer = Conv2D(2, [3, 2], strides=[1, 2], padding="SAME")
    assert (layer.padding, layer.kernel_size, layer.strides) == ("same", (3, 2), (1, 2))


# ------------------------------------------------------------------ models
def test_conv_layers_train_in_functional_model():
    inputs = lamina.Input((8, 8, 3))
    x = Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = SeparableConv2D(4, 3, strides=2, padding="same")(x)
    x = DepthwiseConv2D(3, padding="same")(x)
    x = Conv2DTranspose(2, 3, strides=2, padding="same")(x)
    assert x.shape == (None, 8, 8, 2)
    model = lamina.Model(inputs, x)
    model.compile(optimizer="sgd", loss="mse")
    data = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype("float32")
    target = np.random.default_rng(1).normal(size=(16, 8, 8, 2)).astype("float32")
    before = model.evaluate(data, target, verbose=0)
    model.fit(data, target, epochs=2, batch_size=8, verbose=0)
    assert model.evaluate(data, target, verbose=0) < before
    assert model.predict(data, verbose=0).shape == (16, 8, 8, 2)


def test_conv1d_trains_in_sequential():
    model = lamina.Sequential([
        lamina.Input((10, 2)),
        Conv1D(4, 3, padding="causal", activation="relu"),
        DepthwiseConv1D(2, strides=2),
        SeparableConv1D(3, 2, padding="same"),
        Conv1DTranspose(1, 3, strides=2, padding="same"),
    ])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 10, 2)).astype("float32")
    history = model.fit(x, x[..., :1], epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.predict(x, verbose=0).shape == (8, 10, 1)


def test_conv_symbolic_shape_with_unknown_spatial_dims():
    out = Conv2D(3, 3, strides=2, padding="same")(lamina.Input((None, 7, 2)))
    assert out.shape == (None, None, 4, 3)
    assert Conv2DTranspose(3, 3, strides=2)(lamina.Input((None, 5, 2))).shape == (None, None, 11, 3)
