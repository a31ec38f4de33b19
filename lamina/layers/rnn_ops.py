"""The CPU LSTM kernel as one opaque operator for ``torch.compile`` (jit_compile=True).

Traced by ``torch.compile``, ``torch.lstm`` decomposes into a set of ops per time step (minutes
of compiling, a slower loop), so recurrent layers call their fused kernel eagerly there, which
breaks the compiled step into a dozen graphs and frames (~5% of an LSTM step on the CPU). On
the CPU, ``torch.lstm`` runs oneDNN's LSTM layer (``aten.mkldnn_rnn_layer``) and its backward
(``aten.mkldnn_rnn_layer_backward``). This module wraps that pair as a custom operator with
its own autograd formula: Dynamo keeps it as one node, the step stays one graph, and the
values and gradients are those of the eager kernel. ``recurrent.py`` owns when it applies
(``lstm_applies``): float32 on the CPU with oneDNN on, one layer, one direction, once the
trainer has called ``register()`` (``torch.library`` imports Dynamo, too slow for import time).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["lstm", "lstm_applies", "register"]

_LSTM_MODE = 2  # oneDNN's (and cuDNN's) code for an LSTM
_OPS: dict = {}  # filled by register(): the operator, and whether oneDNN is on


def register() -> None:
    """Define the operator (once per process). Called before tracing, by the trainer's jit.

    Not at import: ``torch.library`` imports Dynamo (~1 s), which ``import lamina`` must not pay.
    """
    if "lstm_layer" not in _OPS:
        _OPS["lstm_layer"] = _define()
    _OPS["onednn"] = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


def lstm_applies(x: Tensor, hx, params, has_biases: bool, num_layers: int, dropout: float,
                 bidirectional: bool) -> bool:
    """Whether ``lstm`` computes what ``torch.lstm`` would for these arguments."""
    tensors = [x, *hx, *params]
    return (_OPS.get("onednn", False) and has_biases and num_layers == 1 and dropout == 0.0
            and not bidirectional and len(params) == 4 and x.ndim == 3
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors))


def lstm(x: Tensor, hx, params, train: bool):
    """``torch.lstm(x, hx, params, True, 1, 0.0, train, False, True)`` (batch first) as one operator."""
    w_ih, w_hh, b_ih, b_hh = params
    h0, c0 = hx
    outputs, h_n, c_n, _ = _OPS["lstm_layer"](x.transpose(0, 1).contiguous(), w_ih, w_hh, b_ih, b_hh,
                                             h0[0], c0[0], train)
    return outputs.transpose(0, 1), h_n.unsqueeze(0), c_n.unsqueeze(0)


def _define():
    """The forward and backward operators, with the autograd formula joining them."""

    @torch.library.custom_op("lamina::lstm_layer", mutates_args=())
    def lstm_layer(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor, h0: Tensor,
                   c0: Tensor, train: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Outputs (time, batch, units), last h and c, and oneDNN's workspace for the backward pass."""
        with torch.enable_grad():  # oneDNN keeps the workspace only with grad mode on
            return tuple(torch.ops.aten.mkldnn_rnn_layer.default(
                x, w_ih, w_hh, b_ih, b_hh, h0, c0, False, [], _LSTM_MODE, h0.shape[-1], 1, True, False,
                False, train))

    @lstm_layer.register_fake
    def _(x, w_ih, w_hh, b_ih, b_hh, h0, c0, train):
        workspace = torch.library.get_ctx().new_dynamic_size()
        return (x.new_empty(x.shape[0], x.shape[1], h0.shape[-1]), h0.new_empty(h0.shape),
                c0.new_empty(c0.shape), x.new_empty(workspace, dtype=torch.uint8))

    @torch.library.custom_op("lamina::lstm_layer_backward", mutates_args=())
    def lstm_layer_backward(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor, h0: Tensor,
                            c0: Tensor, outputs: Tensor, h_n: Tensor, c_n: Tensor, grad_outputs: Tensor,
                            grad_h: Tensor, grad_c: Tensor,
                            workspace: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Gradients of x, w_ih, w_hh, the bias (the same for b_ih and b_hh), h0 and c0."""
        grads = torch.ops.aten.mkldnn_rnn_layer_backward.default(
            x, w_ih, w_hh, b_ih, b_hh, h0, c0, outputs, h_n, c_n, grad_outputs, grad_h, grad_c,
            False, _LSTM_MODE, h0.shape[-1], 1, True, True, False, [], False, workspace)
        return grads[0], grads[1], grads[2], grads[3], grads[5], grads[6]

    @lstm_layer_backward.register_fake
    def _(x, w_ih, w_hh, b_ih, b_hh, h0, c0, outputs, h_n, c_n, grad_outputs, grad_h, grad_c, workspace):
        return (torch.empty_like(x), torch.empty_like(w_ih), torch.empty_like(w_hh), torch.empty_like(b_ih),
                torch.empty_like(h0), torch.empty_like(c0))

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:7], *output)

    def backward(ctx, grad_outputs, grad_h, grad_c, _grad_workspace):
        x, w_ih, w_hh, b_ih, b_hh, h0, c0, outputs, h_n, c_n, workspace = ctx.saved_tensors
        # An output the loss does not use has no gradient: oneDNN wants zeros.
        grad_outputs = torch.zeros_like(outputs) if grad_outputs is None else grad_outputs.contiguous()
        grad_h = torch.zeros_like(h_n) if grad_h is None else grad_h.contiguous()
        grad_c = torch.zeros_like(c_n) if grad_c is None else grad_c.contiguous()
        dx, dw_ih, dw_hh, db, dh0, dc0 = lstm_layer_backward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, outputs, h_n,
                                                             c_n, grad_outputs, grad_h, grad_c, workspace)
        return dx, dw_ih, dw_hh, db, db, dh0, dc0, None

    lstm_layer.register_autograd(backward, setup_context=setup_context)
    return lstm_layer
