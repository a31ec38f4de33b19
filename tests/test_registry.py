"""Registry-driven checks: every registered class round-trips through its config."""

import inspect

import pytest

import lamina  # noqa: F401  (imports every provider module)
from lamina import registry

# Constructor arguments for registered classes that have required arguments.
_EXAMPLE_ARGS = {
    ("layer", "Dense"): {"units": 3},
    ("layer", "Activation"): {"activation": "relu"},
    ("layer", "Dropout"): {"rate": 0.25},
    ("layer", "Reshape"): {"target_shape": (2, -1)},
    ("layer", "InputLayer"): {"shape": (4,)},
    ("layer", "Dot"): {"axes": 1},
    ("layer", "Embedding"): {"input_dim": 5, "output_dim": 2},
    ("layer", "Rescaling"): {"scale": 0.5},
    ("loss", "LossFunctionWrapper"): {"fn": registry.get("loss", "mean_squared_error")},
    ("metric", "MeanMetricWrapper"): {"fn": registry.get("metric_function", "binary_accuracy")},
    ("initializer", "Constant"): {"value": 0.5},
    ("schedule", "ExponentialDecay"): {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.9},
    ("schedule", "InverseTimeDecay"): {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5},
    ("schedule", "PiecewiseConstantDecay"): {"boundaries": [10], "values": [0.1, 0.01]},
    ("schedule", "PolynomialDecay"): {"initial_learning_rate": 0.1, "decay_steps": 10},
    ("schedule", "CosineDecay"): {"initial_learning_rate": 0.1, "decay_steps": 10},
    ("schedule", "CosineDecayRestarts"): {"initial_learning_rate": 0.1, "first_decay_steps": 10},
}
# Lambda needs a function and refuses from_config in safe mode (tested in tests/layers/test_misc.py).
for _name in ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
              "SeparableConv1D", "SeparableConv2D"):
    _EXAMPLE_ARGS[("layer", _name)] = {"filters": 2, "kernel_size": 3}
for _name in ("DepthwiseConv1D", "DepthwiseConv2D"):
    _EXAMPLE_ARGS[("layer", _name)] = {"kernel_size": 3}
for _name in ("AlphaDropout", "GaussianDropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"):
    _EXAMPLE_ARGS[("layer", _name)] = {"rate": 0.25}
_EXAMPLE_ARGS[("layer", "GaussianNoise")] = {"stddev": 0.1}
for _name in ("AveragePooling1D", "AveragePooling2D", "AveragePooling3D"):
    _EXAMPLE_ARGS[("layer", _name)] = {"pool_size": 2}
_EXAMPLE_ARGS[("layer", "Permute")] = {"dims": (2, 1)}
_EXAMPLE_ARGS[("layer", "RepeatVector")] = {"n": 2}
_EXAMPLE_ARGS[("layer", "MultiHeadAttention")] = {"num_heads": 2, "key_dim": 4}
for _name in ("SimpleRNNCell", "LSTMCell", "GRUCell", "SimpleRNN", "LSTM", "GRU"):
    _EXAMPLE_ARGS[("layer", _name)] = {"units": 3}


def _recurrent_args():
    from lamina.layers import GRUCell, LSTM, LSTMCell, Dense

    _EXAMPLE_ARGS[("layer", "RNN")] = {"cell": LSTMCell(2)}
    _EXAMPLE_ARGS[("layer", "StackedRNNCells")] = {"cells": [LSTMCell(2), GRUCell(3)]}
    _EXAMPLE_ARGS[("layer", "Bidirectional")] = {"layer": LSTM(2)}
    _EXAMPLE_ARGS[("layer", "TimeDistributed")] = {"layer": Dense(2)}


_recurrent_args()
for _name in ("GraphConv", "ChebConv", "LaplaceBeltramiConv"):
    _EXAMPLE_ARGS[("layer", _name)] = {"units": 3}
_EXAMPLE_ARGS[("optimizer", "LossScaleOptimizer")] = {"inner_optimizer": registry.get("optimizer", "sgd")}
_SKIP = {("layer", "Sequential"), ("layer", "Functional"), ("layer", "Layer"), ("layer", "Lambda")}


def _registered_classes():
    seen = set()
    for kind in ("activation", "initializer", "regularizer", "constraint", "loss", "metric",
                 "optimizer", "schedule", "layer"):
        for name in registry.names(kind):
            obj = registry.lookup_class(kind, name)
            if not inspect.isclass(obj) or inspect.isabstract(obj) or (kind, id(obj)) in seen:
                continue
            seen.add((kind, id(obj)))
            if (kind, obj.__name__) in _SKIP:
                continue
            yield pytest.param(kind, obj, id=f"{kind}-{obj.__name__}")


def _instantiate(kind, cls):
    kwargs = _EXAMPLE_ARGS.get((kind, cls.__name__))
    if kwargs is not None:
        return cls(**kwargs)
    try:
        return cls()
    except TypeError as error:
        pytest.fail(f"{kind} {cls.__name__} needs constructor arguments: add it to _EXAMPLE_ARGS ({error})")


@pytest.mark.parametrize("kind, cls", list(_registered_classes()))
def test_registry_config_round_trip(kind, cls):
    obj = _instantiate(kind, cls)
    if not hasattr(obj, "get_config"):
        pytest.skip(f"{cls.__name__} has no get_config")
    try:
        config = obj.get_config()
    except NotImplementedError:
        pytest.skip(f"{cls.__name__} is an abstract base")
    rebuilt = registry.get(kind, registry.serialize(kind, obj))
    assert type(rebuilt) is type(obj)
    assert rebuilt.get_config() == config


def test_registry_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="relu"):
        registry.get("activation", "relu_typo")


def test_registry_get_passes_objects_through():
    def custom(x):
        return x

    assert registry.get("activation", custom) is custom
    assert registry.get("loss", None) is None
