"""Tests for lamina.layers.base: naming, subclassing, add_weight, the Keras weight
interchange, trainable, losses, the training context and InputSpec."""

import numpy as np
import pytest
import torch

import lamina
from lamina import regularizers
from lamina.layers import Dense, Dropout, InputSpec, Layer
from lamina.layers.base import _snake_case, clear_session


def _make_block(module):
    """The same custom layer written against ``module`` (lamina or keras)."""

    class Block(module.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = module.layers.Dense(3)

        def build(self, input_shape):
            self.counter = self.add_weight(shape=(1,), initializer="zeros", trainable=False, name="counter")
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")
            self.inner.build(input_shape)

        def call(self, inputs):
            return self.inner(inputs * self.scale) + self.counter

    return Block


class Scale(Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="kernel")

    def call(self, inputs):
        return inputs * self.w


class TrainingProbe(Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []

    def call(self, inputs, training=None):
        self.seen.append(training)
        return inputs


# ---------------------------------------------------------------- naming
def test_layer_auto_names_count_up_and_clear_session_resets():
    clear_session()
    assert [Dense(1).name for _ in range(3)] == ["dense", "dense_1", "dense_2"]
    assert Dropout(0.1).name == "dropout"
    clear_session()
    assert Dense(1).name == "dense"


def test_layer_auto_names_match_keras(keras):
    keras.backend.clear_session(free_memory=False)
    clear_session()
    BlockK, BlockL = _make_block(keras), _make_block(lamina)
    theirs = [keras.layers.Dense(1).name, keras.layers.Dense(1).name, BlockK().name, BlockK().name,
              keras.layers.Dropout(0.1).name, keras.Sequential().name, keras.Sequential().name]
    ours = [Dense(1).name, Dense(1).name, BlockL().name, BlockL().name, Dropout(0.1).name,
            lamina.Sequential().name, lamina.Sequential().name]
    assert ours == theirs


@pytest.mark.parametrize("name", ["Conv2D", "GRU", "MyCustomLayer", "ReLU", "PReLU", "Conv2DTranspose",
                                  "SimpleRNN", "MultiHeadAttention", "UpSampling2D", "LSTMCell", "Dense"])
def test_layer_snake_case_matches_keras(name, keras):
    from keras.src.utils.naming import to_snake_case

    assert _snake_case(name) == to_snake_case(name)


def test_layer_user_names_kept_and_do_not_consume_counter():
    clear_session()
    assert Dense(1, name="head").name == "head"
    assert Dense(1).name == "dense"


def test_layer_name_must_be_string():
    with pytest.raises(TypeError, match="name"):
        Dense(1, name=3)


def test_layer_clear_session_exported_at_top_level():
    assert lamina.clear_session is clear_session


# ---------------------------------------------------------------- subclassing and add_weight
def test_layer_subclass_builds_on_first_call():
    layer = Scale()
    assert not layer.built and layer.get_weights() == []
    out = layer(torch.full((2, 3), 2.0))
    assert layer.built
    torch.testing.assert_close(out, torch.full((2, 3), 2.0))
    assert [w.shape for w in layer.get_weights()] == [(3,)]


def test_layer_add_weight_renamed_by_attribute_assignment():
    layer = Scale()
    layer.build((None, 4))
    assert list(layer.state_dict()) == ["w"]
    assert layer.w is layer.weights[0] and isinstance(layer.w, torch.nn.Parameter)


def test_layer_add_weight_keeps_name_without_assignment():
    layer = Layer()
    layer.add_weight(shape=(2,), name="kernel")
    layer.add_weight(shape=(2,), name="kernel")
    layer.add_weight(shape=(1,))
    assert list(layer.state_dict()) == ["kernel", "kernel_1", "variable"]


def test_layer_add_weight_defaults_as_keras():
    layer = Layer()
    scalar = layer.add_weight()
    assert tuple(scalar.shape) == () and scalar.dtype == torch.float32
    ints = layer.add_weight(shape=(3,), dtype="int32", trainable=False)
    assert ints.dtype == torch.int32 and torch.equal(ints, torch.zeros(3, dtype=torch.int32))
    big = layer.add_weight(shape=(200, 300))
    limit = np.sqrt(6 / 500)
    assert 0.95 * limit < big.abs().max().item() <= limit  # glorot_uniform


def test_layer_add_weight_accepts_keras_only_arguments():
    layer = Layer()
    w = layer.add_weight(shape=(2,), initializer="ones", autocast=False, aggregation="mean",
                         overwrite_with_gradient=False)
    torch.testing.assert_close(w.detach(), torch.ones(2))
    with pytest.raises(TypeError, match="bogus"):
        layer.add_weight(shape=(2,), bogus=1)


def test_layer_add_weight_initializer_callable_and_object():
    layer = Layer()
    a = layer.add_weight(shape=(2, 2), initializer=lamina.initializers.Constant(3.0))
    b = layer.add_weight(shape=(2,), initializer=lambda shape, dtype=None: torch.full(shape, 5.0))
    torch.testing.assert_close(a.detach(), torch.full((2, 2), 3.0))
    torch.testing.assert_close(b.detach(), torch.full((2,), 5.0))


def test_layer_non_trainable_weights_are_buffers():
    layer = Layer()
    w = layer.add_weight(shape=(2,), name="w")
    n = layer.add_weight(shape=(3,), trainable=False, name="n")
    assert isinstance(w, torch.nn.Parameter) and not isinstance(n, torch.nn.Parameter)
    assert [name for name, _ in layer.named_parameters()] == ["w"]
    assert [name for name, _ in layer.named_buffers()] == ["n"]
    assert set(layer.state_dict()) == {"w", "n"}
    assert layer.trainable_weights == [w] and layer.non_trainable_weights == [n]


def test_layer_weights_order_matches_keras(keras):
    x = np.ones((2, 4), dtype="float32")
    ours, theirs = _make_block(lamina)(), _make_block(keras)()
    ours(x)
    theirs(x)
    shapes = lambda ws: [tuple(w.shape) for w in ws]  # noqa: E731
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    assert [w.shape for w in ours.get_weights()] == [(4,), (1,), (4, 3), (3,)]
    assert shapes(ours.trainable_weights) == [(4,), (3, 4), (3,)]
    assert len(ours.trainable_weights) == len(theirs.trainable_weights)
    assert shapes(ours.non_trainable_weights) == shapes(theirs.non_trainable_weights) == [(1,)]


def test_layer_weights_move_to_and_from_keras(keras):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4)).astype("float32")
    ours, theirs = _make_block(lamina)(), _make_block(keras)()
    ours(x)
    theirs(x)
    values = [rng.normal(size=w.shape).astype("float32") for w in theirs.get_weights()]
    theirs.set_weights(values)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours(x).detach().numpy(), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-5, atol=1e-6)
    for a, b in zip(ours.get_weights(), values):
        np.testing.assert_array_equal(a, b)


def test_layer_variables_aliases():
    layer = _make_block(lamina)()
    layer(torch.ones(1, 2))
    assert layer.variables == layer.weights
    assert layer.trainable_variables == layer.trainable_weights
    assert layer.non_trainable_variables == layer.non_trainable_weights


def test_layer_shared_weight_counted_once():
    class Tied(Layer):
        def __init__(self):
            super().__init__()
            self.a = Dense(2)
            self.b = self.a

        def call(self, x):
            return self.b(self.a(x))

    layer = Tied()
    layer(torch.ones(1, 2))
    assert len(layer.weights) == 2 and layer.count_params() == 6


def test_layer_sublayers_in_module_list_are_tracked():
    class Stack(Layer):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([Dense(3), Dense(2)])

        def call(self, x):
            for block in self.blocks:
                x = block(x)
            return x

    layer = Stack()
    layer(torch.ones(1, 4))
    assert [w.shape for w in layer.get_weights()] == [(4, 3), (3,), (3, 2), (2,)]


# ---------------------------------------------------------------- trainable
def test_layer_trainable_false_moves_weights_and_stops_grad():
    layer = Dense(2)
    layer.build((None, 3))
    layer.trainable = False
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2
    assert all(not p.requires_grad for p in layer.parameters())
    layer.trainable = True
    assert len(layer.trainable_weights) == 2 and all(p.requires_grad for p in layer.parameters())


def test_layer_trainable_false_at_construction():
    layer = Dense(2, trainable=False)
    layer(torch.ones(1, 3))
    assert not layer.kernel.requires_grad and layer.trainable_weights == []
    assert layer.get_config()["trainable"] is False


def test_layer_trainable_propagates_to_sublayers_as_keras(keras):
    ours, theirs = _make_block(lamina)(), _make_block(keras)()
    ours(torch.ones(1, 4))
    theirs(np.ones((1, 4), "float32"))
    ours.trainable = False
    theirs.trainable = False
    assert ours.inner.trainable is False and theirs.inner.trainable is False
    assert len(ours.trainable_weights) == len(theirs.trainable_weights) == 0
    assert len(ours.non_trainable_weights) == len(theirs.non_trainable_weights) == 4
    assert not any(p.requires_grad for p in ours.parameters())


def test_layer_frozen_sublayer_only():
    block = _make_block(lamina)()
    block(torch.ones(1, 4))
    block.inner.trainable = False
    assert [tuple(w.shape) for w in block.trainable_weights] == [(4,)]
    assert [tuple(w.shape) for w in block.non_trainable_weights] == [(1,), (3, 4), (3,)]


def test_layer_declared_non_trainable_weight_stays_non_trainable():
    layer = Layer()
    layer.add_weight(shape=(2,), trainable=False)
    layer.trainable = True
    assert layer.trainable_weights == []


# ---------------------------------------------------------------- count_params and set_weights errors
def test_layer_count_params():
    layer = _make_block(lamina)()
    layer(torch.ones(1, 4))
    assert layer.count_params() == 4 + 1 + 12 + 3


def test_layer_count_params_unbuilt_raises():
    with pytest.raises(ValueError, match=r'"dense_x".*not built'):
        Dense(2, name="dense_x").count_params()


def test_layer_set_weights_wrong_count_message():
    layer = Dense(2, name="d")
    layer.build((None, 3))
    with pytest.raises(ValueError, match=r'"d" expects 2 weight arrays \(\[\(3, 2\), \(2,\)\]\), but received 1'):
        layer.set_weights([np.zeros((3, 2))])


def test_layer_set_weights_wrong_shape_message():
    layer = Dense(2, name="d")
    layer.build((None, 3))
    with pytest.raises(ValueError, match=r'"d" weight "kernel" has shape \(3, 2\).*shape \(2, 3\)'):
        layer.set_weights([np.zeros((2, 3)), np.zeros(2)])


def test_layer_set_weights_accepts_tensors_and_casts():
    layer = Dense(2)
    layer.build((None, 1))
    layer.set_weights([torch.ones(1, 2, dtype=torch.float64), np.arange(2)])
    kernel, bias = layer.get_weights()
    assert kernel.dtype == np.float32 and bias.tolist() == [0.0, 1.0]


def test_layer_set_weights_keeps_parameter_objects():
    layer = Dense(2)
    layer.build((None, 3))
    before = [id(p) for p in layer.parameters()]
    layer.set_weights([np.ones((3, 2)), np.ones(2)])
    assert [id(p) for p in layer.parameters()] == before


def test_layer_get_weights_returns_copies():
    layer = Dense(2)
    layer.build((None, 3))
    layer.get_weights()[0][:] = 7.0
    assert not (layer.get_weights()[0] == 7.0).any()


# ---------------------------------------------------------------- torch behaviour
def test_layer_state_dict_round_trip():
    a, b = _make_block(lamina)(), _make_block(lamina)()
    x = torch.randn(2, 4)
    a(x)
    b(x)
    # torch lists a module's parameters before its buffers.
    assert list(a.state_dict()) == ["scale", "counter", "inner.kernel", "inner.bias"]
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b(x), a(x))


def test_layer_to_dtype_and_device_as_torch():
    layer = _make_block(lamina)()
    layer(torch.ones(1, 4))
    assert layer.to("cpu") is layer
    layer.to(torch.float64)
    assert all(w.dtype == torch.float64 for w in layer.weights)
    assert layer(torch.ones(1, 4, dtype=torch.float64)).dtype == torch.float64
    assert all(w.dtype == np.float64 for w in layer.get_weights())


def test_layer_first_call_under_inference_mode_creates_trainable_weights():
    layer = Dense(2)
    with torch.inference_mode():
        layer(torch.ones(1, 3))
    assert not layer.kernel.is_inference() and layer.kernel.requires_grad
    layer(torch.ones(1, 3)).sum().backward()
    assert layer.kernel.grad is not None


def test_layer_gradients_reach_parameters():
    layer = Dense(2)
    layer(torch.ones(3, 4)).sum().backward()
    assert layer.kernel.grad is not None and layer.bias.grad is not None
    torch.testing.assert_close(layer.bias.grad, torch.full((2,), 3.0))


# ---------------------------------------------------------------- losses
class ActivityLoss(Layer):
    def call(self, inputs):
        self.add_loss(inputs.abs().sum())
        return inputs


def test_layer_add_loss_collected_and_reset_each_call():
    layer = ActivityLoss()
    layer(torch.ones(2, 2))
    assert [float(v) for v in layer.losses] == [4.0]
    layer(torch.ones(1, 3))
    assert [float(v) for v in layer.losses] == [3.0]


def test_layer_losses_from_nested_layers_and_regularizers():
    class Outer(Layer):
        def __init__(self):
            super().__init__()
            self.probe = ActivityLoss()
            self.dense = Dense(2, kernel_regularizer=regularizers.L1(0.5), kernel_initializer="ones")

        def call(self, x):
            return self.dense(self.probe(x))

    layer = Outer()
    layer(torch.ones(2, 3))
    values = [float(v.detach()) for v in layer.losses]
    assert values == [6.0, 0.5 * 6]


def test_layer_losses_survive_unrelated_top_level_call_as_keras(keras):
    x = np.ones((2, 3), "float32")
    ours, other = Dense(2, activity_regularizer="l2"), Dense(2)
    theirs, their_other = keras.layers.Dense(2, activity_regularizer="l2"), keras.layers.Dense(2)
    ours(x)
    theirs(x)
    other(x)
    their_other(x)
    assert len(ours.losses) == len(theirs.losses) == 1
    ours(x)
    assert len(ours.losses) == 1


def test_layer_losses_of_this_call_are_what_the_trainer_sees():
    from lamina.layers import base

    first, second = ActivityLoss(), ActivityLoss()
    first(torch.ones(1, 2))
    second(torch.full((1, 2), 3.0))
    assert [float(v) for owner in base._LOSS_OWNERS for v in owner._own_losses] == [6.0]
    assert [float(v) for v in first.losses] == [2.0]


def test_layer_shape_inference_records_no_losses():
    layer = ActivityLoss()
    layer(lamina.Input((3,)))
    assert layer.losses == []


def test_layer_lazy_nested_build_keeps_losses_of_the_call():
    class Outer(Layer):
        def __init__(self):
            super().__init__()
            self.probe = ActivityLoss()
            # Scale has no compute_output_shape: building the Sequential runs it on zeros.
            self.rest = lamina.Sequential([Scale(), Dense(1)])

        def call(self, x):
            return self.rest(self.probe(x))

    layer = Outer()
    layer(torch.ones(2, 3))
    assert [float(v) for v in layer.losses] == [6.0]


def test_layer_frozen_layer_has_no_regularization_loss(keras):
    layer = Dense(2, kernel_regularizer="l2")
    layer.build((None, 3))
    reference = keras.layers.Dense(2, kernel_regularizer="l2")
    reference.build((None, 3))
    layer.trainable = False
    reference.trainable = False
    assert len(layer.losses) == len(reference.losses) == 0


def test_layer_activity_regularizer_divided_by_batch_as_keras(keras):
    x = np.arange(6, dtype="float32").reshape(3, 2)
    ours = Layer(activity_regularizer=regularizers.L1(0.1))
    theirs = keras.layers.Layer(activity_regularizer=keras.regularizers.L1(0.1))
    ours.call = lambda inputs: inputs
    theirs.call = lambda inputs: inputs
    ours(x)
    theirs(x)
    assert float(ours.losses[0]) == pytest.approx(0.1 * 15 / 3)
    assert float(ours.losses[0]) == pytest.approx(float(keras.ops.convert_to_numpy(theirs.losses[0])))


# ---------------------------------------------------------------- training context
def test_layer_training_defaults_to_false_at_top_level():
    probe = TrainingProbe()
    probe(torch.ones(1))
    probe(torch.ones(1), training=None)
    probe(torch.ones(1), training=True)
    assert probe.seen == [False, False, True]


def test_layer_training_propagates_to_nested_calls():
    class Outer(Layer):
        def __init__(self):
            super().__init__()
            self.probe = TrainingProbe()
            self.fixed = TrainingProbe()

        def call(self, x):
            return self.fixed(self.probe(x), training=False)

    outer = Outer()
    outer(torch.ones(1), training=True)
    outer(torch.ones(1))
    assert outer.probe.seen == [True, False]
    assert outer.fixed.seen == [False, False]


def test_layer_call_without_training_argument_is_fine():
    torch.testing.assert_close(Scale()(torch.ones(1, 2), training=True), torch.ones(1, 2))


def test_layer_base_call_not_implemented():
    with pytest.raises(NotImplementedError, match="call"):
        Layer()(torch.ones(1))


def test_layer_numpy_input_converted_to_floatx():
    probe = TrainingProbe()
    out = probe(np.ones((2, 2)))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32


# ---------------------------------------------------------------- config
def test_layer_get_config_base_keys():
    assert Layer(name="plain").get_config() == {"name": "plain", "trainable": True, "dtype": "float32"}
    config = Layer(name="reg", activity_regularizer="l1").get_config()
    assert config["activity_regularizer"]["class_name"] == "L1"


def test_layer_from_config_accepts_keras_dtype_policy(keras):
    config = keras.layers.Dense(3, name="k").get_config()
    layer = Layer.from_config({k: config[k] for k in ("name", "trainable", "dtype")})
    assert layer.dtype == "float32" and layer.name == "k"


def test_layer_dtype_argument():
    layer = Dense(2, dtype="float64")
    out = layer(torch.ones(1, 3, dtype=torch.float64))
    assert out.dtype == torch.float64 and layer.dtype == "float64"
    assert Dense(2, dtype=torch.float16).dtype == "float16"


def test_layer_unknown_kwarg_raises():
    with pytest.raises(TypeError, match="bad_arg"):
        Layer(bad_arg=1)


# ---------------------------------------------------------------- InputSpec
def test_input_spec_ndim_and_axes_errors():
    layer = Layer(name="spec")
    with pytest.raises(ValueError, match=r'"spec".*expected ndim=3, found ndim=2'):
        InputSpec(ndim=3).check(layer, (2, 4))
    with pytest.raises(ValueError, match=r"expected min_ndim=3, found ndim=2"):
        InputSpec(min_ndim=3).check(layer, (2, 4))
    with pytest.raises(ValueError, match=r"axis -1 of input shape to have value 5.*\(2, 4\)"):
        InputSpec(axes={-1: 5}).check(layer, (2, 4))
    InputSpec(ndim=2, axes={-1: 4, 0: None}).check(layer, (2, 4))


def test_input_spec_checked_on_call():
    class Needs3D(Layer):
        def __init__(self):
            super().__init__()
            self.input_spec = InputSpec(ndim=3)

        def call(self, x):
            return x

    with pytest.raises(ValueError, match="ndim=3"):
        Needs3D()(torch.ones(2, 2))


def test_outermost_call_moves_inputs_to_the_weights_device():
    # "meta" stands in for a GPU: a model whose weights moved is still called with NumPy.
    from lamina import Input, Sequential
    from lamina.layers import Dense

    model = Sequential([Input((3,)), Dense(2), Dense(1)])
    model.to("meta")
    out = model(np.ones((4, 3), "float32"))
    assert out.device.type == "meta" and tuple(out.shape) == (4, 1)
    model.to_empty(device="cpu")  # the cached device follows every move
    assert model(torch.ones(4, 3)).device.type == "cpu"


def test_outermost_call_moves_a_list_of_numpy_inputs_to_the_weights_device():
    from lamina import Input, Model
    from lamina.layers import Concatenate, Dense

    a, b = Input((2,)), Input((3,))
    model = Model([a, b], Dense(1)(Concatenate()([a, b])))
    model.to("meta")
    out = model([np.ones((4, 2), "float32"), np.ones((4, 3), "float32")])
    assert out.device.type == "meta" and tuple(out.shape) == (4, 1)
