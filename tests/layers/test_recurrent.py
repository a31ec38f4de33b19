"""Tests for lamina.layers.recurrent against Keras 3 with the same weights, closed forms, and
the fused kernels against the step-by-step loop."""

import itertools
import json

import numpy as np
import pytest
import torch

import lamina
from lamina import registry
from lamina.layers.base import Layer
from lamina.layers.core import Dense
from lamina.layers.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, SimpleRNN, SimpleRNNCell, StackedRNNCells
from lamina.layers.wrappers import Bidirectional, TimeDistributed

LAYERS = {"SimpleRNN": SimpleRNN, "LSTM": LSTM, "GRU": GRU}
FLAGS = list(itertools.product([False, True], repeat=3))  # return_sequences, return_state, go_backwards
RIGHT_PADDED = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], bool)
ARBITRARY = np.array([[1, 0, 1, 1, 0, 1], [0, 0, 1, 1, 1, 0], [1, 1, 0, 0, 0, 1], [0, 1, 0, 0, 0, 0]], bool)
MASKS = {"none": None, "right_padded": RIGHT_PADDED, "arbitrary": ARBITRARY}


def _np(x):
    if isinstance(x, (list, tuple)):
        return [_np(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _knp(keras, x):
    if isinstance(x, (list, tuple)):
        return [_knp(keras, v) for v in x]
    return np.asarray(keras.ops.convert_to_numpy(x))


def _flat(values):
    return [v for item in values for v in (_flat(item) if isinstance(item, list) else [item])]


def _assert_close(ours, theirs, atol=1e-5):
    if isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _assert_close(a, b, atol)
        return
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=atol)


def _sequences(shape=(4, 6, 5), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _pair(keras, name, input_shape, **kwargs):
    """A Keras layer and a lamina layer, built and holding the same (random) weights."""
    theirs = getattr(keras.layers, name)(**kwargs)
    theirs.build(input_shape)
    ours = registry.get("layer", {"class_name": name, "config": {k: v for k, v in kwargs.items()}})
    ours.build(input_shape)
    rng = np.random.default_rng(1)
    weights = [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def _run_both(keras, theirs, ours, x, mask=None, **call_kwargs):
    if mask is None:
        return _np(ours(torch.as_tensor(x), **call_kwargs)), _knp(keras, theirs(x, **call_kwargs))
    return (_np(ours(torch.as_tensor(x), mask=torch.as_tensor(mask), **call_kwargs)),
            _knp(keras, theirs(x, mask=mask, **call_kwargs)))


# --------------------------------------------------------------- numbers against Keras
@pytest.mark.parametrize("flags", FLAGS, ids=["".join("TF"[not f] for f in fl) for fl in FLAGS])
@pytest.mark.parametrize("name", list(LAYERS))
def test_recurrent_matches_keras_fused_and_loop(keras, name, flags):
    """Every return_sequences / return_state / go_backwards combination, without a mask and with
    right-padded and arbitrary masks (including a fully masked row), on both paths."""
    return_sequences, return_state, go_backwards = flags
    x = _sequences()
    theirs, ours = _pair(keras, name, x.shape, units=3, return_sequences=return_sequences,
                         return_state=return_state, go_backwards=go_backwards)
    for mask in MASKS.values():
        ours.use_cudnn = "auto"
        ours_fused, reference = _run_both(keras, theirs, ours, x, mask)
        _assert_close(ours_fused, reference)
        ours.use_cudnn = False
        ours_loop, _ = _run_both(keras, theirs, ours, x, mask)
        _assert_close(ours_loop, reference)


@pytest.mark.parametrize("name, kwargs", [
    ("GRU", {"reset_after": False}),
    ("GRU", {"use_bias": False}),
    ("GRU", {"activation": "relu", "recurrent_activation": "hard_sigmoid"}),
    ("LSTM", {"use_bias": False}),
    ("LSTM", {"activation": "relu"}),
    ("LSTM", {"recurrent_activation": "tanh"}),
    ("SimpleRNN", {"activation": "relu"}),
    ("SimpleRNN", {"activation": "sigmoid", "use_bias": False}),
])
@pytest.mark.parametrize("mask", ["none", "arbitrary"])
def test_recurrent_variants_match_keras(keras, name, kwargs, mask):
    x = _sequences()
    theirs, ours = _pair(keras, name, x.shape, units=3, return_sequences=True, **kwargs)
    ours_out, reference = _run_both(keras, theirs, ours, x, MASKS[mask])
    _assert_close(ours_out, reference)


@pytest.mark.parametrize("name", list(LAYERS))
def test_recurrent_initial_state_matches_keras(keras, name):
    x = _sequences()
    theirs, ours = _pair(keras, name, x.shape, units=3, return_state=True)
    count = 2 if name == "LSTM" else 1
    states = [np.random.default_rng(i).normal(size=(4, 3)).astype("float32") for i in range(count)]
    ours_out = _np(ours(torch.as_tensor(x), initial_state=[torch.as_tensor(s) for s in states],
                        mask=torch.as_tensor(ARBITRARY)))
    reference = _knp(keras, theirs(x, initial_state=states, mask=ARBITRARY))
    _assert_close(ours_out, reference)


def test_recurrent_fully_masked_row_keeps_initial_state_and_outputs_zeros():
    layer = LSTM(3, return_sequences=True, return_state=True, bias_initializer="ones")
    x = torch.randn(2, 4, 5)
    h0, c0 = torch.randn(2, 3), torch.randn(2, 3)
    mask = torch.tensor([[True] * 4, [False] * 4])
    outputs, h, c = layer(x, initial_state=[h0, c0], mask=mask)
    torch.testing.assert_close(outputs[1], torch.zeros(4, 3))
    torch.testing.assert_close(h[1], h0[1])
    torch.testing.assert_close(c[1], c0[1])


@pytest.mark.parametrize("name", list(LAYERS))
def test_recurrent_returns_list_of_output_and_states(name):
    out = LAYERS[name](3, return_state=True)(torch.zeros(2, 4, 5))
    assert isinstance(out, list) and len(out) == (3 if name == "LSTM" else 2)
    assert [tuple(t.shape) for t in out] == [(2, 3)] * len(out)


# --------------------------------------------------------------- fused kernels vs loop
@pytest.mark.parametrize("mask", list(MASKS), ids=list(MASKS))
@pytest.mark.parametrize("name", list(LAYERS))
def test_recurrent_fused_gradients_match_loop(name, mask):
    x = torch.as_tensor(_sequences())
    mask = None if MASKS[mask] is None else torch.as_tensor(MASKS[mask])
    fused = LAYERS[name](3, return_sequences=True, return_state=True, bias_initializer="random_normal")
    fused.build(tuple(x.shape))
    looped = LAYERS[name](3, return_sequences=True, return_state=True, use_cudnn=False)
    looped.build(tuple(x.shape))
    looped.set_weights(fused.get_weights())
    results = []
    for layer in (fused, looped):
        outputs = layer(x, mask=mask)
        loss = sum((o * torch.linspace(-1, 1, o.numel()).view(o.shape)).sum() for o in outputs)
        grads = torch.autograd.grad(loss, [layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias])
        results.append(([o.detach() for o in outputs], grads))
    for a, b in zip(results[0][0] + list(results[0][1]), results[1][0] + list(results[1][1])):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_recurrent_use_cudnn_true_raises_when_fused_kernel_is_impossible():
    layer = LSTM(3, activation="relu", use_cudnn=True)
    with pytest.raises(ValueError, match="use_cudnn"):
        layer(torch.zeros(2, 4, 5))
    layer = GRU(3, recurrent_dropout=0.5, use_cudnn=True)
    layer(torch.zeros(2, 4, 5))  # inference: recurrent dropout is off, the fused kernel runs
    with pytest.raises(ValueError, match="use_cudnn"):
        layer(torch.zeros(2, 4, 5), training=True)


def test_recurrent_use_cudnn_rejects_invalid_values():
    with pytest.raises(ValueError, match="use_cudnn"):
        LSTM(3, use_cudnn="always")


# --------------------------------------------------------------- weights, shapes, config
@pytest.mark.parametrize("name, kwargs", [("SimpleRNN", {}), ("LSTM", {}), ("GRU", {}),
                                          ("GRU", {"reset_after": False}), ("LSTM", {"use_bias": False})])
def test_recurrent_weights_shapes_and_count_match_keras(keras, name, kwargs):
    theirs = getattr(keras.layers, name)(4, **kwargs)
    theirs.build((None, 7, 5))
    ours = LAYERS[name](4, **kwargs)
    ours.build((None, 7, 5))
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    assert ours.count_params() == theirs.count_params()


def test_lstm_unit_forget_bias_initializes_forget_gate_to_one(keras):
    ours = LSTM(3, bias_initializer="ones")
    ours.build((None, 2, 4))
    theirs = keras.layers.LSTM(3, bias_initializer="ones")
    theirs.build((None, 2, 4))
    np.testing.assert_array_equal(ours.get_weights()[2], theirs.get_weights()[2])
    plain = LSTM(3, unit_forget_bias=False)
    plain.build((None, 2, 4))
    np.testing.assert_array_equal(plain.get_weights()[2], np.zeros(12, "float32"))


def test_lstm_stores_torch_layout_that_torch_lstm_accepts():
    layer = LSTM(3, return_sequences=True, bias_initializer="random_normal")
    layer.build((None, 4, 5))
    reference = torch.nn.LSTM(5, 3, batch_first=True)
    with torch.no_grad():
        reference.weight_ih_l0.copy_(layer.cell.kernel)
        reference.weight_hh_l0.copy_(layer.cell.recurrent_kernel)
        reference.bias_ih_l0.copy_(layer.cell.bias)
        reference.bias_hh_l0.zero_()
    x = torch.randn(2, 4, 5)
    torch.testing.assert_close(layer(x), reference(x)[0])
    kernel = layer.get_weights()[0]
    np.testing.assert_array_equal(kernel, layer.cell.kernel.detach().numpy().T)


@pytest.mark.parametrize("flags", FLAGS[:4])
@pytest.mark.parametrize("name", list(LAYERS))
def test_recurrent_compute_output_shape_matches_keras(keras, name, flags):
    return_sequences, return_state, _ = flags
    kwargs = {"return_sequences": return_sequences, "return_state": return_state}
    theirs = getattr(keras.layers, name)(4, **kwargs).compute_output_shape((None, 7, 5))
    ours = LAYERS[name](4, **kwargs).compute_output_shape((None, 7, 5))
    if return_state:
        assert isinstance(ours, list) and ours == [tuple(s) for s in theirs]
    else:
        assert ours == tuple(theirs)


@pytest.mark.parametrize("name", list(LAYERS))
def test_recurrent_get_config_matches_keras(keras, name):
    kwargs = {"return_sequences": True, "go_backwards": True, "dropout": 0.25, "name": "rec"}
    ours = LAYERS[name](4, **kwargs).get_config()
    theirs = getattr(keras.layers, name)(4, **kwargs).get_config()
    # SimpleRNN's Keras config omits its constructor's seed; lamina keeps it so it round-trips.
    assert set(ours) == set(theirs) | ({"seed"} if name == "SimpleRNN" else set())
    for key, value in ours.items():
        if key == "dtype":
            assert value == "float32"
        elif isinstance(value, dict):
            assert value["class_name"] == theirs[key]["class_name"]
        elif key in theirs:
            assert value == theirs[key], key
    json.dumps(ours)


@pytest.mark.parametrize("name", list(LAYERS))
def test_recurrent_from_keras_config(keras, name):
    config = getattr(keras.layers, name)(4, return_state=True, activation="relu", name="k").get_config()
    layer = LAYERS[name].from_config(config)
    assert (layer.units, layer.return_state, layer.name) == (4, True, "k")
    assert registry.serialize("activation", layer.activation) == "relu"


def _all_layers():
    return [
        SimpleRNN(3, dropout=0.1, seed=2), LSTM(3, return_sequences=True, unit_forget_bias=False),
        GRU(3, reset_after=False, kernel_regularizer="l2"), SimpleRNNCell(3), LSTMCell(3), GRUCell(3),
        RNN(LSTMCell(3), go_backwards=True), RNN([SimpleRNNCell(2), GRUCell(3)]),
        StackedRNNCells([LSTMCell(2), LSTMCell(3)]), Bidirectional(GRU(3), merge_mode="sum"),
        Bidirectional(LSTM(3, return_sequences=True),
                      backward_layer=LSTM(2, return_sequences=True, go_backwards=True)),
        TimeDistributed(Dense(2)),
    ]


@pytest.mark.parametrize("layer", _all_layers(), ids=lambda layer: type(layer).__name__)
def test_recurrent_config_round_trip(layer):
    config = registry.serialize("layer", layer)
    json.dumps(config)
    clone = registry.get("layer", json.loads(json.dumps(config)))
    assert type(clone) is type(layer)
    assert registry.serialize("layer", clone) == config


# --------------------------------------------------------------- masks
def test_recurrent_output_mask_follows_return_sequences():
    mask = torch.tensor(RIGHT_PADDED)
    x = torch.randn(4, 6, 5)
    assert torch.equal(LSTM(3, return_sequences=True)(x, mask=mask)._keras_mask, mask)
    assert getattr(LSTM(3)(x, mask=mask), "_keras_mask", None) is None
    outputs = GRU(3, return_sequences=True, return_state=True)(x, mask=mask)
    assert torch.equal(outputs[0]._keras_mask, mask)


def test_recurrent_zero_output_for_mask_matches_keras(keras):
    x = _sequences()
    theirs = keras.layers.RNN(keras.layers.GRUCell(3), return_sequences=True, zero_output_for_mask=True)
    theirs.build(x.shape)
    ours = RNN(GRUCell(3), return_sequences=True, zero_output_for_mask=True)
    ours.build(x.shape)
    ours.set_weights(theirs.get_weights())
    for use_cudnn in ("auto", False):
        ours.use_cudnn = use_cudnn
        _assert_close(*_run_both(keras, theirs, ours, x, ARBITRARY))


# --------------------------------------------------------------- stateful
@pytest.mark.parametrize("name", list(LAYERS))
def test_recurrent_stateful_across_batches_matches_keras(keras, name):
    first, second = _sequences((2, 5, 4), seed=3), _sequences((2, 5, 4), seed=4)
    theirs, ours = _pair(keras, name, (2, 5, 4), units=3, stateful=True, return_state=True)
    for batch in (first, second):
        _assert_close(*_run_both(keras, theirs, ours, batch))
    assert all(not s.requires_grad for s in ours.states)
    ours.reset_states()
    theirs.reset_states()
    _assert_close(*_run_both(keras, theirs, ours, first))
    # A stateful layer's second batch differs from a fresh start.
    fresh = _np(ours(torch.as_tensor(second))[0])
    ours.reset_state()
    restarted = _np(ours(torch.as_tensor(second))[0])
    assert not np.allclose(fresh, restarted)
    assert len(ours.weights) == 3 and "_state_0" not in ours.state_dict()


def test_recurrent_stateful_requires_fixed_batch_and_matching_size():
    with pytest.raises(ValueError, match="batch size must be fixed"):
        LSTM(3, stateful=True).build((None, 5, 4))
    layer = LSTM(3, stateful=True)
    layer(torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match="batch of 3"):
        layer(torch.zeros(3, 5, 4))


def test_recurrent_stateful_trains_over_two_batches():
    layer = LSTM(3, stateful=True)
    x = torch.randn(2, 4, 5)
    for _ in range(2):
        layer(x, training=True).sum().backward()  # no graph reuse across batches
    assert layer.cell.kernel.grad is not None


# --------------------------------------------------------------- dropout
@pytest.mark.parametrize("name", list(LAYERS))
def test_recurrent_dropout_only_in_training_and_seeded(name):
    x = torch.randn(8, 5, 6)
    layer = LAYERS[name](4, dropout=0.5, recurrent_dropout=0.3, seed=1)
    inference = layer(x)
    reference = LAYERS[name](4)
    reference.build(tuple(x.shape))
    reference.set_weights(layer.get_weights())
    torch.testing.assert_close(inference, reference(x))
    trained = layer(x, training=True)
    assert not torch.allclose(trained, inference)
    again = LAYERS[name](4, dropout=0.5, recurrent_dropout=0.3, seed=1)
    again.build(tuple(x.shape))
    again.set_weights(layer.get_weights())
    torch.testing.assert_close(again(x, training=True), trained)


def test_lstm_input_dropout_fused_path_uses_one_mask_for_all_steps():
    # An input dropped at one step is dropped at every step: constant inputs stay constant.
    layer = LSTM(2, dropout=0.5, seed=0, return_sequences=True)
    x = torch.ones(64, 3, 8)
    layer(x)
    masked = {}
    original = layer.cell._random_mask

    def spy(like, rate, count):
        masked["mask"] = original(like, rate, count)
        return masked["mask"]

    layer.cell._random_mask = spy
    out = layer(x, training=True)
    reference = LSTM(2, return_sequences=True)
    reference.build((64, 3, 8))
    reference.set_weights(layer.get_weights())
    torch.testing.assert_close(out, reference(x * masked["mask"].unsqueeze(1)))
    assert set(masked["mask"].unique().tolist()) == {0.0, 2.0}


# --------------------------------------------------------------- cells and the generic RNN
@pytest.mark.parametrize("name, cell_kwargs", [("SimpleRNNCell", {}), ("LSTMCell", {}), ("GRUCell", {}),
                                               ("GRUCell", {"reset_after": False})])
def test_cell_single_step_matches_keras(keras, name, cell_kwargs):
    theirs = getattr(keras.layers, name)(3, **cell_kwargs)
    theirs.build((None, 5))
    ours = registry.get("layer", {"class_name": name, "config": {"units": 3, **cell_kwargs}})
    ours.build((None, 5))
    rng = np.random.default_rng(0)
    theirs.set_weights([rng.normal(size=w.shape).astype("float32") for w in theirs.get_weights()])
    ours.set_weights(theirs.get_weights())
    x = rng.normal(size=(4, 5)).astype("float32")
    count = 2 if name == "LSTMCell" else 1
    states = [rng.normal(size=(4, 3)).astype("float32") for _ in range(count)]
    out, new = ours(torch.as_tensor(x), [torch.as_tensor(s) for s in states])
    ref_out, ref_new = theirs(x, states)
    _assert_close(_np(out), _knp(keras, ref_out))
    _assert_close(_np(list(new)), _knp(keras, list(ref_new)))


def test_rnn_with_lstm_cell_equals_lstm_layer():
    x = torch.randn(3, 5, 4)
    layer = LSTM(3, return_sequences=True)
    generic = RNN(LSTMCell(3), return_sequences=True)
    generic.build(tuple(x.shape))
    layer.build(tuple(x.shape))
    generic.set_weights(layer.get_weights())
    torch.testing.assert_close(generic(x), layer(x))


def test_rnn_stacked_cells_match_keras(keras):
    x = _sequences()
    theirs = keras.layers.RNN([keras.layers.LSTMCell(3), keras.layers.GRUCell(2)], return_sequences=True,
                              return_state=True)
    theirs.build(x.shape)
    ours = RNN([LSTMCell(3), GRUCell(2)], return_sequences=True, return_state=True)
    ours.build(x.shape)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    ours.set_weights(theirs.get_weights())
    ours_out, reference = _run_both(keras, theirs, ours, x, ARBITRARY)
    _assert_close(_flat(ours_out), _flat(reference))
    assert len(_flat(ours_out)) == 4
    shape = ours.compute_output_shape((None, 6, 5))
    assert shape == [(None, 6, 2), [(None, 3), (None, 3)], (None, 2)]


class _SumCell(Layer):
    """A user-written cell: the state accumulates the inputs, h_t = h_{t-1} + x_t."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def call(self, inputs, states):
        total = states[0] + inputs
        return total, [total]


def test_rnn_user_cell_loop_matches_closed_form():
    x = torch.arange(24, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[True, False, True, True], [False, True, True, False]])
    layer = RNN(_SumCell(3), return_sequences=True)
    out = layer(x, mask=mask)
    expected = torch.cumsum(x * mask.unsqueeze(-1), dim=1)
    expected[1, 0] = 0.0  # before any valid step the output is zeros
    torch.testing.assert_close(out, expected)
    backwards = RNN(_SumCell(3), go_backwards=True, return_sequences=True)(x)
    torch.testing.assert_close(backwards, torch.cumsum(x.flip(1), 1))


def test_rnn_rejects_cell_without_state_size():
    with pytest.raises(ValueError, match="state_size"):
        RNN(Dense(3))


def test_rnn_wrong_number_of_initial_states():
    with pytest.raises(ValueError, match="initial state"):
        LSTM(3)(torch.zeros(2, 4, 5), initial_state=[torch.zeros(2, 3)])


def test_recurrent_rejects_invalid_units():
    with pytest.raises(ValueError, match="units"):
        LSTM(0)
    with pytest.raises(ValueError, match="units"):
        GRUCell(-2)


def test_recurrent_input_spec_names_layer():
    layer = GRU(3, name="my_gru")
    with pytest.raises(ValueError, match="my_gru"):
        layer(torch.zeros(2, 5))
    layer(torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="my_gru"):
        layer(torch.zeros(2, 4, 6))


def test_recurrent_regularizer_losses_closed_form():
    layer = LSTM(3, kernel_regularizer=lamina.regularizers.L2(0.1),
                 recurrent_regularizer=lamina.regularizers.L1(0.2))
    layer.build((None, 4, 5))
    kernel, recurrent, _ = layer.get_weights()
    expected = 0.1 * np.square(kernel).sum() + 0.2 * np.abs(recurrent).sum()
    assert float(sum(layer.losses).detach()) == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------- Bidirectional
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences, return_state", [(False, False), (True, False), (True, True)])
def test_bidirectional_matches_keras(keras, merge_mode, return_sequences, return_state):
    x = _sequences()
    kwargs = {"return_sequences": return_sequences, "return_state": return_state}
    theirs = keras.layers.Bidirectional(keras.layers.LSTM(3, **kwargs), merge_mode=merge_mode)
    theirs.build(x.shape)
    ours = Bidirectional(LSTM(3, **kwargs), merge_mode=merge_mode)
    ours.build(x.shape)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    rng = np.random.default_rng(2)
    theirs.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in theirs.get_weights()])
    ours.set_weights(theirs.get_weights())
    for mask in (None, ARBITRARY):
        _assert_close(*_run_both(keras, theirs, ours, x, mask))
    expected_shape = theirs.compute_output_shape((None, 6, 5))
    shape = ours.compute_output_shape((None, 6, 5))
    if isinstance(shape, list):
        assert shape == [tuple(s) for s in expected_shape]
    else:
        assert shape == tuple(expected_shape)


def test_bidirectional_weight_order_is_forward_then_backward(keras):
    ours = Bidirectional(GRU(2, name="g"), name="bi")
    ours.build((None, 3, 4))
    forward, backward = ours.forward_layer, ours.backward_layer
    assert (forward.name, backward.name, backward.go_backwards) == ("forward_g", "backward_g", True)
    arrays = ours.get_weights()
    for ours_w, layer_w in zip(arrays, forward.get_weights() + backward.get_weights()):
        np.testing.assert_array_equal(ours_w, layer_w)
    theirs = keras.layers.Bidirectional(keras.layers.GRU(2))
    theirs.build((None, 3, 4))
    assert set(ours.get_config()) == set(theirs.get_config())


def test_bidirectional_custom_backward_layer_and_validation():
    layer = Bidirectional(LSTM(3), backward_layer=GRU(2, go_backwards=True))
    assert tuple(layer(torch.zeros(2, 4, 5)).shape) == (2, 5)
    with pytest.raises(ValueError, match="go_backwards"):
        Bidirectional(LSTM(3), backward_layer=LSTM(3))
    with pytest.raises(ValueError, match="return_sequences"):
        Bidirectional(LSTM(3), backward_layer=LSTM(3, go_backwards=True, return_sequences=True))
    with pytest.raises(ValueError, match="merge mode"):
        Bidirectional(LSTM(3), merge_mode="max")


def test_bidirectional_stateful_reset():
    layer = Bidirectional(SimpleRNN(2, stateful=True))
    x = torch.randn(2, 3, 4)
    first = layer(x)
    assert len(layer.states) == 2
    assert not torch.allclose(layer(x), first)
    layer.reset_states()
    torch.testing.assert_close(layer(x), first)


# --------------------------------------------------------------- TimeDistributed
def test_time_distributed_dense_matches_keras(keras):
    x = _sequences((3, 4, 5))
    theirs = keras.layers.TimeDistributed(keras.layers.Dense(2, activation="tanh"))
    theirs.build(x.shape)
    ours = TimeDistributed(Dense(2, activation="tanh"))
    ours.build(x.shape)
    ours.set_weights(theirs.get_weights())
    out, reference = _run_both(keras, theirs, ours, x)
    _assert_close(out, reference)
    assert ours.compute_output_shape((None, 4, 5)) == tuple(theirs.compute_output_shape((None, 4, 5)))
    assert set(ours.get_config()) == set(theirs.get_config())


def test_time_distributed_rejects_2d_input():
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        TimeDistributed(Dense(2))(torch.zeros(3, 4))


def test_time_distributed_keeps_mask_and_wraps_rnn():
    x = torch.randn(2, 3, 4, 5)
    layer = TimeDistributed(LSTM(3))
    out = layer(x)
    assert tuple(out.shape) == (2, 3, 3)
    torch.testing.assert_close(out[:, 1], layer.layer(x[:, 1]))
    mask = torch.tensor([[True, False, True], [True, True, False]])
    assert torch.equal(TimeDistributed(Dense(2))(torch.randn(2, 3, 4), mask=mask)._keras_mask, mask)


# --------------------------------------------------------------- models
def test_embedding_lstm_dense_model_trains():
    from lamina.layers.misc import Embedding

    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 8, size=64)
    tokens = np.zeros((64, 8), dtype="int64")
    for row, length in enumerate(lengths):
        tokens[row, :length] = rng.integers(1, 10, size=length)
    targets = (tokens == 3).any(axis=1).astype("float32")[:, None]
    model = lamina.Sequential([lamina.Input((8,), dtype="int64"), Embedding(10, 8, mask_zero=True), LSTM(8),
                               Dense(1, activation="sigmoid")])
    model.compile(optimizer=lamina.optimizers.Adam(0.02), loss="binary_crossentropy")
    history = model.fit(tokens, targets, epochs=6, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0]


def test_functional_model_with_return_state_and_bidirectional():
    inputs = lamina.Input((6, 5))
    sequence, h, c = LSTM(4, return_sequences=True, return_state=True)(inputs)
    merged = Bidirectional(GRU(3))(sequence)
    outputs = Dense(2)(merged)
    model = lamina.Model(inputs, [outputs, h, c])
    assert model.output_shape == [(None, 2), (None, 4), (None, 4)]
    x = torch.randn(3, 6, 5)
    result = model(x)
    assert [tuple(r.shape) for r in result] == [(3, 2), (3, 4), (3, 4)]
    lstm = model.layers[1]
    torch.testing.assert_close(result[1], lstm(x)[1])


def test_time_distributed_batch_normalization_training_matches_keras_per_step(keras):
    from lamina.layers.normalization import BatchNormalization

    x = _sequences((4, 3, 5))
    theirs = keras.layers.TimeDistributed(keras.layers.BatchNormalization())
    theirs.build(x.shape)
    ours = TimeDistributed(BatchNormalization())
    ours.build(x.shape)
    # Batch statistics per time step (Keras 3 loops over time), not pooled over batch * time.
    _assert_close(*_run_both(keras, theirs, ours, x, training=True))
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, rtol=0, atol=1e-6)
    assert np.abs(ours.get_weights()[2]).sum() > 0  # the moving mean moved


def test_masked_sequential_model_matches_keras_end_to_end(keras):
    from lamina.layers.misc import Embedding

    def build(module, embedding):
        layers = module.layers
        return module.Sequential([
            module.Input((7,), dtype="int64"), embedding(20, 6, mask_zero=True),
            layers.Bidirectional(layers.LSTM(5, return_sequences=True), merge_mode="ave"),
            layers.TimeDistributed(layers.Dense(3)), layers.GRU(4, go_backwards=True), layers.Dense(1)])

    class _Namespace:
        Sequential, Input = lamina.Sequential, lamina.Input
        layers = type("layers", (), dict(Bidirectional=Bidirectional, LSTM=LSTM, TimeDistributed=TimeDistributed,
                                         Dense=Dense, GRU=GRU))

    theirs = build(keras, keras.layers.Embedding)
    ours = build(_Namespace, Embedding)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    ours.set_weights(theirs.get_weights())
    tokens = np.random.default_rng(0).integers(1, 20, size=(5, 7))
    tokens[1, 4:], tokens[2, :3], tokens[3, 2] = 0, 0, 0  # right, left and inner padding
    np.testing.assert_allclose(ours.predict(tokens, verbose=0), theirs.predict(tokens, verbose=0),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", list(LAYERS))
def test_recurrent_default_configuration_never_loops(monkeypatch, name):
    def no_loop(*args, **kwargs):
        raise AssertionError("the step-by-step loop ran where the fused kernel applies")

    monkeypatch.setattr(RNN, "_loop_pass", no_loop)
    layer = LAYERS[name](3, dropout=0.2, return_state=True, go_backwards=True)
    x = torch.randn(4, 6, 5)
    layer(x)
    layer(x, mask=torch.as_tensor(ARBITRARY), training=True)
    Bidirectional(LAYERS[name](3, return_sequences=True))(x, mask=torch.as_tensor(RIGHT_PADDED))


def test_encoder_decoder_with_initial_state_trains_and_round_trips():
    encoder_inputs, decoder_inputs = lamina.Input((5, 3)), lamina.Input((4, 2))
    _, h, c = LSTM(6, return_state=True)(encoder_inputs)
    decoded = LSTM(6, return_sequences=True)(decoder_inputs, initial_state=[h, c])
    model = lamina.Model([encoder_inputs, decoder_inputs], TimeDistributed(Dense(2))(decoded))
    assert model.output_shape == (None, 4, 2)
    rng = np.random.default_rng(0)
    sources, targets = rng.random((16, 5, 3), dtype="float32"), rng.random((16, 4, 2), dtype="float32")
    model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="mse")
    losses = model.fit([sources, targets], targets, epochs=4, batch_size=8, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    clone = lamina.Model.from_config(json.loads(json.dumps(model.get_config())))
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone.predict([sources, targets], verbose=0),
                                  model.predict([sources, targets], verbose=0))
