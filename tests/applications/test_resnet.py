"""Tests for lamina.applications.resnet: architectures against Keras and torchvision's counts,
heads, input and weights validation, a torch reference for the basic block, and training."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lamina import Input, config
from lamina.applications import (
    ResNet18, ResNet34, ResNet50, ResNet101, ResNet152, ResNetCIFAR, preprocess_input,
)
from lamina.layers import Rescaling
from lamina.models import load_model


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _trainable_count(model) -> int:
    return int(sum(w.numel() for w in model.trainable_weights))


def _random_bn_statistics(model, seed=0):
    """Weights with BN moving statistics away from (0, 1), so inference mode is a real test."""
    rng = np.random.default_rng(seed)
    weights = []
    for layer in model.layers:
        arrays = layer.get_weights()
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, variance = (a.shape for a in arrays)
            arrays = [rng.uniform(0.5, 1.5, gamma), rng.normal(0, 0.1, beta),
                      rng.normal(0, 0.1, mean), rng.uniform(0.5, 1.5, variance)]
        weights.extend(np.asarray(a, dtype="float32") for a in arrays)
    return weights


def _images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype("float32")


# ---------------------------------------------------------------------- against Keras
def test_resnet50_matches_keras_layers_and_parameter_count(keras):
    ours = ResNet50()
    theirs = keras.applications.ResNet50(weights=None)
    assert ours.count_params() == theirs.count_params() == 25_636_712
    assert _trainable_count(ours) == 25_583_592
    ours_layers = [(type(l).__name__, l.name, tuple(l._output_shape)) for l in ours.layers]
    theirs_layers = [(type(l).__name__, l.name, tuple(l.output.shape)) for l in theirs.layers]
    assert len(ours_layers) == len(theirs_layers) == 177
    # Input layer names carry a per-session suffix; compare their class and shape only.
    assert ours_layers[0][::2] == theirs_layers[0][::2] == ("InputLayer", (None, 224, 224, 3))
    assert ours_layers[1:] == theirs_layers[1:]
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]


@pytest.mark.parametrize("factory, keras_name", [(ResNet101, "ResNet101"), (ResNet152, "ResNet152")])
def test_deeper_resnets_match_keras_parameter_count(keras, factory, keras_name):
    ours = factory(include_top=False, input_shape=(32, 32, 3))
    theirs = getattr(keras.applications, keras_name)(weights=None, include_top=False, input_shape=(32, 32, 3))
    assert ours.count_params() == theirs.count_params()
    assert [l.name for l in ours.layers[1:]] == [l.name for l in theirs.layers[1:]]


def test_resnet50_predictions_match_keras_with_copied_weights(keras):
    theirs = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg", input_shape=(64, 64, 3))
    theirs.set_weights(_random_bn_statistics(theirs))
    ours = ResNet50(include_top=False, pooling="avg", input_shape=(64, 64, 3))
    for our_layer, their_layer in zip(ours.layers, theirs.layers):
        our_layer.set_weights(their_layer.get_weights())
    x = _images((2, 64, 64, 3))
    expected = _numpy(theirs(x, training=False))
    got = _numpy(ours(torch.as_tensor(x), training=False))
    assert got.shape == (2, 2048)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_resnet50_top_matches_keras_defaults(keras):
    ours = ResNet50(include_top=True, input_shape=(32, 32, 3), classes=7, classifier_activation=None)
    theirs = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=7,
                                         classifier_activation=None)
    assert ours.name == theirs.name == "resnet50"
    assert ours.output_shape == theirs.output_shape == (None, 7)
    assert ours.get_layer("predictions").get_config()["activation"] == "linear"


def test_preprocess_input_matches_keras(keras):
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    expected = keras.applications.resnet50.preprocess_input(x.copy())
    np.testing.assert_allclose(preprocess_input(x), expected, atol=1e-5)
    np.testing.assert_allclose(_numpy(preprocess_input(torch.as_tensor(x))), expected, atol=1e-5)
    first = np.transpose(x, (0, 3, 1, 2))
    np.testing.assert_allclose(preprocess_input(first, data_format="channels_first"),
                               np.transpose(expected, (0, 3, 1, 2)), atol=1e-5)


def test_preprocess_input_leaves_its_argument_unchanged():
    x = np.full((1, 1, 1, 3), 100.0, dtype="float32")
    preprocess_input(x)
    assert (x == 100.0).all()
    assert preprocess_input(np.zeros((1, 1, 3), dtype="uint8")).dtype == np.float32


# ---------------------------------------------------------------------- basic-block ResNets
@pytest.mark.parametrize("factory, trainable, total", [
    (ResNet18, 11_689_512, 11_699_112),
    (ResNet34, 21_797_672, 21_814_696),
])
def test_basic_resnets_match_torchvision_parameter_counts(factory, trainable, total):
    model = factory()  # torchvision's counts exclude the BN moving statistics (buffers)
    assert _trainable_count(model) == trainable
    assert model.count_params() == total
    assert model.output_shape == (None, 1000)


def test_resnet18_layer_names():
    names = [layer.name for layer in ResNet18(include_top=False).layers]
    assert names[1:7] == ["conv1_pad", "conv1_conv", "conv1_bn", "conv1_relu", "pool1_pad", "pool1_pool"]
    assert "conv2_block1_0_conv" not in names and "conv2_block1_1_pad" not in names
    for stage in (3, 4, 5):
        assert {f"conv{stage}_block1_0_conv", f"conv{stage}_block1_1_pad", f"conv{stage}_block2_out"} <= set(names)
    assert names[-1] == "conv5_block2_out"


def _conv(x, layer, stride=1, padding=0):
    kernel = torch.as_tensor(layer.get_weights()[0]).permute(3, 2, 0, 1)
    return F.conv2d(x, kernel, stride=stride, padding=padding)


def _bn(x, layer):
    gamma, beta, mean, variance = (torch.as_tensor(a) for a in layer.get_weights())
    return F.batch_norm(x, mean, variance, gamma, beta, training=False, eps=1e-5)


def _torchvision_resnet18(model, x):
    """torchvision's resnet18 forward pass, written with torch functions on ``model``'s weights."""
    get = model.get_layer
    x = F.relu(_bn(_conv(x, get("conv1_conv"), 2, 3), get("conv1_bn")))
    x = F.max_pool2d(x, 3, 2, 1)
    for stage in (2, 3, 4, 5):
        for block in (1, 2):
            name = f"conv{stage}_block{block}"
            stride = 2 if stage > 2 and block == 1 else 1
            shortcut = x
            if stride == 2:
                shortcut = _bn(_conv(x, get(f"{name}_0_conv"), 2), get(f"{name}_0_bn"))
            y = F.relu(_bn(_conv(x, get(f"{name}_1_conv"), stride, 1), get(f"{name}_1_bn")))
            y = _bn(_conv(y, get(f"{name}_2_conv"), 1, 1), get(f"{name}_2_bn"))
            x = F.relu(y + shortcut)
    kernel, bias = (torch.as_tensor(a) for a in get("predictions").get_weights())
    return F.linear(x.mean(dim=(2, 3)), kernel.T, bias)


def test_resnet18_matches_a_torchvision_style_reference():
    model = ResNet18(input_shape=(64, 64, 3), classes=5, classifier_activation=None)
    model.set_weights(_random_bn_statistics(model))
    x = _images((2, 64, 64, 3))
    with torch.no_grad():
        expected = _torchvision_resnet18(model, torch.as_tensor(x).permute(0, 3, 1, 2))
        got = model(torch.as_tensor(x), training=False)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------- heads and shapes
@pytest.mark.parametrize("factory, input_shape, expected", [
    (ResNet50, None, (None, None, None, 2048)),
    (ResNet50, (64, 64, 3), (None, 2, 2, 2048)),
    (ResNet18, (96, 64, 3), (None, 3, 2, 512)),
    (ResNet34, (32, 32, 1), (None, 1, 1, 512)),
    (ResNetCIFAR, (32, 32, 3), (None, 8, 8, 64)),
    (ResNetCIFAR, None, (None, None, None, 64)),
])
def test_resnet_without_top_output_shapes(factory, input_shape, expected):
    model = factory(include_top=False, input_shape=input_shape)
    assert model.output_shape == expected


@pytest.mark.parametrize("factory, expected", [
    (ResNet50, (None, 224, 224, 3)), (ResNet18, (None, 224, 224, 3)), (ResNetCIFAR, (None, 32, 32, 3)),
])
def test_resnet_default_input_shape_with_top(factory, expected):
    assert factory().input_shape == expected


@pytest.mark.parametrize("pooling, layer_name", [("avg", "avg_pool"), ("max", "max_pool")])
def test_resnet_pooling_reduces_the_feature_map(pooling, layer_name):
    features = ResNetCIFAR(depth=8, include_top=False, input_shape=(16, 16, 3))
    pooled = ResNetCIFAR(depth=8, include_top=False, input_shape=(16, 16, 3), pooling=pooling)
    pooled.set_weights(features.get_weights())
    assert pooled.layers[-1].name == layer_name and pooled.output_shape == (None, 64)
    x = torch.as_tensor(_images((3, 16, 16, 3)))
    feature_map = features(x, training=False)
    reduced = feature_map.mean(dim=(1, 2)) if pooling == "avg" else feature_map.amax(dim=(1, 2))
    torch.testing.assert_close(pooled(x, training=False), reduced)


def test_resnet_rejects_an_unknown_pooling():
    with pytest.raises(ValueError, match="pooling=.*'mean'"):
        ResNetCIFAR(include_top=False, pooling="mean")


def test_resnet_input_tensor_uses_the_source_inputs():
    raw = Input((32, 32, 3), name="raw_pixels")
    scaled = Rescaling(1 / 255.0, name="scale")(raw)
    model = ResNetCIFAR(depth=8, input_tensor=scaled)
    assert model.inputs == [raw]
    assert model.layers[1].name == "scale"
    assert tuple(model(torch.zeros(2, 32, 32, 3)).shape) == (2, 10)


def test_resnet_rejects_a_non_symbolic_input_tensor():
    with pytest.raises(TypeError, match="symbolic tensor"):
        ResNetCIFAR(input_tensor=torch.zeros(1, 32, 32, 3))


def test_resnet_channels_first_matches_channels_last():
    last = ResNetCIFAR(depth=8, input_shape=(16, 16, 3))
    last.set_weights(_random_bn_statistics(last))
    config.set_image_data_format("channels_first")
    first = ResNetCIFAR(depth=8, input_shape=(3, 16, 16))
    first.set_weights(last.get_weights())
    assert first.get_layer("conv1_bn").axis == 1
    x = _images((2, 16, 16, 3))
    torch.testing.assert_close(first(torch.as_tensor(x).permute(0, 3, 1, 2), training=False),
                               last(torch.as_tensor(x), training=False), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize("input_shape, match", [
    ((16, 16, 3), "at least 32x32"),
    ((64, 64), "three positive ints"),
    ((64, 0, 3), "three positive ints"),
])
def test_resnet_rejects_bad_input_shapes(input_shape, match):
    with pytest.raises(ValueError, match=match):
        ResNet50(include_top=False, input_shape=input_shape)


def test_resnet_with_top_needs_a_static_input_shape():
    with pytest.raises(ValueError, match="static input_shape"):
        ResNet18(input_shape=(None, None, 3))


def test_resnet_warns_about_unusual_channel_counts():
    with pytest.warns(UserWarning, match="1 or 3 input channels"):
        ResNetCIFAR(depth=8, input_shape=(32, 32, 4))


@pytest.mark.parametrize("classes", [0, 2.5, None])
def test_resnet_rejects_bad_classes(classes):
    with pytest.raises(ValueError, match="classes"):
        ResNetCIFAR(depth=8, classes=classes)


@pytest.mark.parametrize("depth", [7, 10, 2, "20"])
def test_resnet_cifar_rejects_depths_that_are_not_6n_plus_2(depth):
    with pytest.raises(ValueError, match="6n \\+ 2"):
        ResNetCIFAR(depth=depth)


# ---------------------------------------------------------------------- weights
@pytest.mark.parametrize("factory", [ResNet50, ResNet18, ResNet34, ResNetCIFAR])
def test_resnet_refuses_imagenet_weights(factory):
    with pytest.raises(ValueError, match="downloads nothing.*weights=None.*local weights file"):
        factory(weights="imagenet")


def test_resnet_refuses_a_missing_weights_file(tmp_path):
    missing = tmp_path / "missing.weights.safetensors"
    with pytest.raises(ValueError, match="not an existing file.*downloads nothing"):
        ResNetCIFAR(weights=str(missing))


def test_resnet_refuses_weights_of_other_kinds(tmp_path):
    with pytest.raises(ValueError, match="weights=True of type bool"):
        ResNetCIFAR(weights=True)
    h5 = tmp_path / "resnet.h5"
    h5.write_bytes(b"")
    with pytest.raises(ValueError, match="only from files ending in"):
        ResNetCIFAR(weights=h5)


@pytest.mark.parametrize("filename", ["cifar.weights.safetensors", "cifar.lamina"])
def test_resnet_loads_a_local_weights_file(tmp_path, filename):
    source = ResNetCIFAR(depth=8, input_shape=(16, 16, 3))
    source.set_weights(_random_bn_statistics(source))
    path = tmp_path / filename
    source.save_weights(path) if filename.endswith("safetensors") else source.save(path)
    loaded = ResNetCIFAR(depth=8, input_shape=(16, 16, 3), weights=str(path))
    for expected, got in zip(source.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------------- running and training
def test_resnet_cifar_forward_pass():
    model = ResNetCIFAR(depth=20, input_shape=(32, 32, 3), classes=10)
    assert model.name == "resnet20_cifar"
    assert _trainable_count(model) == 272_474  # 0.27M, plus the two projection shortcuts
    probabilities = model(torch.as_tensor(_images((4, 32, 32, 3))), training=False)
    assert tuple(probabilities.shape) == (4, 10)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(4))


def test_resnet_cifar_trains_one_step():
    model = ResNetCIFAR(depth=8, input_shape=(16, 16, 3), classes=3)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    before = model.get_weights()
    loss = model.train_on_batch(_images((8, 16, 16, 3)), np.arange(8) % 3)
    assert np.isfinite(loss) and loss > 0
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights())]
    assert all(changed), "every weight, BN moving statistics included, should move in a training step"


def test_resnet_cifar_survives_save_and_load(tmp_path):
    model = ResNetCIFAR(depth=8, input_shape=(16, 16, 3))
    model.set_weights(_random_bn_statistics(model))
    path = tmp_path / "resnet.lamina"
    model.save(path)
    restored = load_model(path)
    assert [l.name for l in restored.layers] == [l.name for l in model.layers]
    x = torch.as_tensor(_images((2, 16, 16, 3)))
    torch.testing.assert_close(restored(x, training=False), model(x, training=False))
