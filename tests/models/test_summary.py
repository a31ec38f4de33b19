"""Tests for lamina.models.summary: model.summary() text compared character for character
with Keras 3's for the same architectures."""

import numpy as np
import pytest
import torch

import lamina
from lamina.models.summary import readable_memory_size


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    # Keras draws with rich, which crops to the console width (80 columns when not a
    # terminal); a wide COLUMNS lets it print the full line_length, as lamina does.
    monkeypatch.setenv("COLUMNS", "200")


def _text(model, **kwargs) -> str:
    received = []
    model.summary(print_fn=lambda text, **_: received.append(text), **kwargs)
    assert len(received) == 1  # print_fn gets the whole summary as one string, as in Keras
    return received[0]


def _both(keras, build, **kwargs):
    """Summaries of ``build(keras)`` and ``build(lamina)`` with fresh name counters."""
    keras.backend.clear_session(free_memory=False)
    lamina.clear_session()
    theirs = _text(build(keras), **kwargs)
    ours = _text(build(lamina), **kwargs)
    return ours, theirs


def _mlp(m):
    return m.Sequential([m.Input((64,)), m.layers.Dense(128, activation="relu"), m.layers.Dropout(0.5),
                         m.layers.Dense(10, activation="softmax")])


def _frozen(m):
    model = m.Sequential([m.Input((5,)), m.layers.Dense(3, name="frozen"), m.layers.Dense(2)])
    model.layers[0].trainable = False
    return model


def _unbuilt(m):
    return m.Sequential([m.layers.Dense(3), m.layers.Dense(2)])


def _built_later(m):
    model = m.Sequential([m.layers.Dense(3), m.layers.Dense(2)], name="later")
    model.build((None, 4))
    return model


def _nested(m):
    inner = m.Sequential([m.layers.Dense(4), m.layers.Dense(3)], name="inner")
    return m.Sequential([m.Input((5,)), inner, m.layers.Dense(2)], name="outer")


def _wide(m):
    # Long names wrap at spaces; a word or count wider than its column ends in "…".
    return m.Sequential([m.Input((10, 10)), m.layers.Flatten(),
                         m.layers.Dense(1000, name="a_very_long_layer_name_that_wraps_around"),
                         m.layers.Dense(10)])


def _reshape(m):
    return m.Sequential([m.Input((12,)), m.layers.Reshape((3, 4)), m.layers.Dense(5), m.layers.Flatten(),
                         m.layers.Activation("relu"), m.layers.Dense(1)], name="shapes")


def _chain(m):
    x = m.Input((5,), name="x")
    return m.Model(x, m.layers.Dense(2, name="d2")(m.layers.Dense(3, name="d1")(x)), name="chain")


def _branches(m):
    a, b = m.Input((5,), name="a"), m.Input((3,), name="b")
    h = m.layers.Dense(4, name="ha")(a)
    g = m.layers.Dense(4, name="hb")(b)
    return m.Model([a, b], [m.layers.Dense(2, name="out1")(h), m.layers.Dense(1, name="out2")(g)], name="branches")


def _shared(m):
    a, b = m.Input((4,), name="left"), m.Input((4,), name="right")
    encoder, head = m.layers.Dense(3, name="encoder"), m.layers.Dense(2, name="head")
    return m.Model([a, b], [head(encoder(a)), head(encoder(b))], name="shared")


def _chain_shared(m):
    # One node per depth, but the same layer twice: Keras switches to the connections table.
    x = m.Input((3,), name="x")
    square = m.layers.Dense(3, name="square")
    return m.Model(x, square(square(x)), name="twice")


def _multi_output(m):
    class Split(m.layers.Layer):
        def call(self, x):
            return [x * 2, x + 1]

        def compute_output_shape(self, shape):
            return [shape, shape]

    x = m.Input((3,), name="x")
    a, b = Split(name="split")(x)
    return m.Model(x, [m.layers.Dense(1, name="da")(a), m.layers.Dense(1, name="db")(b)], name="multi")


def _nested_functional(m):
    xi = m.Input((4,), name="xi")
    inner = m.Model(xi, m.layers.Dense(3, name="inner_dense")(xi), name="inner_model")
    x = m.Input((4,), name="x")
    return m.Model(x, m.layers.Dense(2, name="top")(inner(x)), name="outer_model")


def _subclassed(m, call=True):
    class TwoLayers(m.Model):
        def __init__(self):
            super().__init__(name="two_layers")
            self.hidden = m.layers.Dense(3, name="hidden")
            self.out = m.layers.Dense(1, name="out")

        def call(self, x, training=None):
            return self.out(self.hidden(x))

    model = TwoLayers()
    if call:
        model(np.zeros((2, 4), "float32"))
    return model


@pytest.mark.parametrize("line_length", [70, 88, 100, 120])
def test_summary_sequential_matches_keras(keras, line_length):
    ours, theirs = _both(keras, _mlp, line_length=line_length)
    assert ours == theirs


@pytest.mark.parametrize("build", [_frozen, _unbuilt, _built_later, _nested, _reshape, _wide],
                         ids=["frozen", "unbuilt", "built_later", "nested", "reshape", "wide"])
@pytest.mark.parametrize("line_length", [40, 60, 88])
def test_summary_sequential_variants_match_keras(keras, build, line_length):
    ours, theirs = _both(keras, build, line_length=line_length)
    assert ours == theirs


@pytest.mark.parametrize("build", [_chain, _branches, _shared, _chain_shared, _multi_output, _nested_functional],
                         ids=["chain", "branches", "shared", "chain_shared", "multi_output", "nested"])
@pytest.mark.parametrize("line_length", [90, 108])
def test_summary_functional_matches_keras(keras, build, line_length):
    ours, theirs = _both(keras, build, line_length=line_length)
    assert ours == theirs


@pytest.mark.parametrize("options", [{"show_trainable": True}, {"expand_nested": True}], ids=["trainable", "expand"])
def test_summary_functional_options_match_keras(keras, options):
    ours, theirs = _both(keras, _nested_functional, line_length=120, **options)
    assert ours == theirs


@pytest.mark.parametrize("call", [True, False], ids=["called", "uncalled"])
def test_summary_subclassed_matches_keras(keras, call):
    ours, theirs = _both(keras, lambda m: _subclassed(m, call), line_length=88)
    assert ours == theirs


@pytest.mark.parametrize("options", [{"show_trainable": True}, {"expand_nested": True},
                                     {"expand_nested": True, "show_trainable": True},
                                     {"layer_range": ["inner", "dense"]}],
                         ids=["trainable", "expand", "both", "range"])
def test_summary_options_match_keras(keras, options):
    def build(m):
        inner = m.Sequential([m.layers.Dense(4, name="i1"), m.layers.Dense(3, name="i2")], name="inner")
        model = m.Sequential([m.Input((5,)), inner, m.layers.Dense(2, name="dense")], name="outer")
        inner.layers[0].trainable = False
        return model

    ours, theirs = _both(keras, build, line_length=100, **options)
    assert ours == theirs


def test_summary_positions_match_keras(keras):
    ours, theirs = _both(keras, _mlp, line_length=80, positions=[0.3, 0.7, 1.0])
    assert ours == theirs


def test_summary_default_line_length_matches_keras(keras):
    ours, theirs = _both(keras, _mlp)
    assert ours == theirs


def test_summary_literal_text():
    lamina.clear_session()
    model = lamina.Sequential([lamina.Input((3,)), lamina.layers.Dense(2, name="out")], name="tiny")
    expected = (
        'Model: "tiny"\n'
        "┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━┓\n"
        "┃ Layer (type)                 ┃ Output Shape          ┃     Param # ┃\n"
        "┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━┩\n"
        "│ out (Dense)                  │ (None, 2)             │           8 │\n"
        "└──────────────────────────────┴───────────────────────┴─────────────┘\n"
        " Total params: 8 (32.00 B)\n"
        " Trainable params: 8 (32.00 B)\n"
        " Non-trainable params: 0 (0.00 B)\n"
    )
    assert _text(model, line_length=70) == expected


def test_summary_unbuilt_shows_question_marks_and_unbuilt_counts():
    text = _text(lamina.Sequential([lamina.layers.Dense(3, name="lazy")]), line_length=70)
    assert "│ lazy (Dense)                 │ ?                     │ 0 (unbuilt) │" in text
    assert " Total params: 0 (0.00 B)" in text


def test_summary_frozen_layer_counts_non_trainable():
    text = _text(_frozen(lamina), line_length=88)
    assert " Total params: 26 (104.00 B)" in text
    assert " Trainable params: 8 (32.00 B)" in text
    assert " Non-trainable params: 18 (72.00 B)" in text


def test_summary_prints_to_stdout_without_print_fn(capsys):
    model = _mlp(lamina)
    model.summary(line_length=70)
    assert capsys.readouterr().out == _text(model, line_length=70)


def test_summary_optimizer_params_line():
    model = lamina.Sequential([lamina.Input((4,)), lamina.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    assert "Optimizer params" not in _text(model, line_length=88)
    model.fit(np.zeros((4, 4), "float32"), np.zeros((4, 3), "float32"), verbose=0)
    text = _text(model, line_length=88)
    # Adam: two slots per weight (2 * 15) plus its step counter and learning rate, as Keras.
    assert " Optimizer params: 32 (" in text and " Total params: 47 (" in text


def test_summary_too_narrow_raises():
    with pytest.raises(ValueError, match="console width"):
        _text(_mlp(lamina), line_length=8)


def test_summary_bad_layer_range_raises():
    with pytest.raises(ValueError, match="layer_range"):
        _text(_mlp(lamina), layer_range=["nope", "dense"])


@pytest.mark.parametrize("size", [0, 620, 1023, 1024, 38440, 3.5 * 1024 ** 3, 2 * 1024 ** 5])
def test_readable_memory_size_matches_keras(size, keras):
    from keras.src.utils.summary_utils import readable_memory_size as keras_readable

    assert readable_memory_size(size) == keras_readable(size)


def test_summary_model_output_unchanged_by_summary():
    model = _mlp(lamina)
    x = torch.randn(2, 64)
    before = model(x)
    _text(model)
    torch.testing.assert_close(model(x), before)
