"""Tests for ``lamina/layers/rnn_ops.py``: the CPU LSTM kernel as one custom operator.

The operator must give exactly what ``torch.lstm`` gives (it runs the same oneDNN kernel),
forward and backward, and stay one node when ``torch.compile`` traces it.
"""

import pytest
import torch

from lamina.layers import rnn_ops


@pytest.fixture(autouse=True)
def registered():
    rnn_ops.register()  # what the trainer does before compiling a step


def _lstm_inputs(batch=5, steps=7, features=3, units=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, features, generator=g, requires_grad=True)
    params = [torch.randn(4 * units, features, generator=g, requires_grad=True),
              torch.randn(4 * units, units, generator=g, requires_grad=True),
              torch.randn(4 * units, generator=g, requires_grad=True),
              torch.zeros(4 * units, requires_grad=True)]
    hx = (torch.randn(1, batch, units, generator=g, requires_grad=True),
          torch.randn(1, batch, units, generator=g, requires_grad=True))
    return x, hx, params


def _loss(kind, outputs, h_n, c_n):
    return {"last": h_n.sum(), "sequence": (outputs ** 2).sum(),
            "all": h_n.sum() + (outputs * 2).sum() + c_n.mean()}[kind]


def _run(kind, lstm):
    x, hx, params = _lstm_inputs()
    outputs, h_n, c_n = lstm(x, hx, params)
    _loss(kind, outputs, h_n, c_n).backward()
    return [outputs, h_n, c_n, x.grad, *[p.grad for p in params], hx[0].grad, hx[1].grad]


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN not built in")
@pytest.mark.parametrize("kind", ["last", "sequence", "all"])
def test_lstm_operator_matches_torch_lstm_values_and_gradients(kind):
    expected = _run(kind, lambda x, hx, params: torch.lstm(x, hx, params, True, 1, 0.0, True, False, True))
    received = _run(kind, lambda x, hx, params: rnn_ops.lstm(x, hx, params, True))
    for a, b in zip(received, expected):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_lstm_operator_applies_to_one_cpu_float32_layer_with_biases_only(monkeypatch):
    x, hx, params = _lstm_inputs()
    monkeypatch.setattr(rnn_ops, "_OPS", {})  # not registered yet: never applies
    assert not rnn_ops.lstm_applies(x, hx, params, True, 1, 0.0, False)
    monkeypatch.undo()
    available = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    assert rnn_ops.lstm_applies(x, hx, params, True, 1, 0.0, False) == available
    assert not rnn_ops.lstm_applies(x.double(), hx, params, True, 1, 0.0, False)
    assert not rnn_ops.lstm_applies(x, hx, params, True, 2, 0.0, False)
    assert not rnn_ops.lstm_applies(x, hx, params, True, 1, 0.0, True)
    assert not rnn_ops.lstm_applies(x, hx, params[:2], False, 1, 0.0, False)
    assert not rnn_ops.lstm_applies(x.to("meta"), hx, params, True, 1, 0.0, False)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN not built in")
def test_lstm_operator_is_one_node_of_a_compiled_graph():
    from torch._dynamo import config as dynamo_config
    from torch._dynamo.utils import counters

    def step(x, hx, params):
        outputs, h_n, c_n = rnn_ops.lstm(torch.tanh(x), hx, params, True)
        return _loss("all", outputs, h_n, c_n)

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    x, hx, params = _lstm_inputs()
    expected = step(x, hx, params)
    expected.backward()
    expected_grads = [x.grad, *[p.grad for p in params]]
    x, hx, params = _lstm_inputs()
    # oneDNN's workspace output has a size only oneDNN knows (the trainer sets this too).
    with dynamo_config.patch(capture_dynamic_output_shape_ops=True):
        received = compiled(x, hx, params)
    received.backward()
    torch.testing.assert_close(received, expected, rtol=1e-6, atol=1e-6)
    for a, b in zip([x.grad, *[p.grad for p in params]], expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    torch._dynamo.reset()
