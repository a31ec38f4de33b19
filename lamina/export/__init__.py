"""Export lamina models for inference: ONNX files (``.onnx``) and ``torch.export`` programs (``.pt2``).

``export_model`` picks the format from the file extension; ``Model.export`` delegates
here. Neither format needs lamina to run: ONNX needs an ONNX runtime, ``.pt2`` needs
torch. See ``docs/deploy.md`` for which to choose.
"""

from __future__ import annotations

import os

from lamina.export.onnx import export_onnx
from lamina.export.torch_export import (
    InferenceModule,
    ModelSignature,
    TensorSpec,
    export_torch,
    load_torch_signature,
    model_signature,
)

__all__ = [
    "export_model", "export_onnx", "export_torch", "model_signature", "load_torch_signature",
    "ModelSignature", "TensorSpec", "InferenceModule", "FORMATS",
]

# format name -> file extension; the names are Keras's ``Model.export`` formats.
FORMATS = {"onnx": ".onnx", "torch": ".pt2"}
_UNSUPPORTED = ("tf_saved_model", "openvino", "litert")


def _infer_format(path: str) -> str:
    for name, extension in FORMATS.items():
        if path.endswith(extension):
            return name
    raise ValueError(
        f"Cannot tell the export format from the filepath {path!r}. Use a filename ending in "
        f"'.onnx' (ONNX) or '.pt2' (torch.export), or pass format='onnx' or format='torch'."
    )


def export_model(model, filepath, format=None, input_signature=None, verbose=None, **kwargs) -> str:
    """Export ``model`` in inference mode with a dynamic batch axis; returns the path written.

    Args:
        model: a built lamina model (Sequential with an ``Input``, functional, or a
            subclassed model that was called once).
        filepath: target path.
        format: ``"onnx"`` or ``"torch"`` (a ``torch.export`` program). Default None:
            inferred from the extension, ``.onnx`` or ``.pt2``.
        input_signature: optional shape ``(None, ...)``, ``TensorSpec``, ``lamina.Input``,
            example array, or a list / dict of them; by default taken from the model.
        verbose: print where the file was written (default True, as Keras).
        **kwargs: passed to ``torch.onnx.export`` or ``torch.export.export``
            (``opset_version`` for ONNX).

    Example:
    >>> import os, tempfile, torch
    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dense
    >>> model = Sequential([Input((3,)), Dense(2)])
    >>> path = export_model(model, os.path.join(tempfile.mkdtemp(), "model.pt2"), verbose=False)
    >>> torch.export.load(path).module()(torch.ones(4, 3)).shape
    torch.Size([4, 2])
    """
    path = os.fspath(filepath)
    if format is None or format == "":
        format = _infer_format(path)
    if format in _UNSUPPORTED:
        raise ValueError(
            f"format={format!r} is a Keras export format lamina does not offer. lamina exports "
            f"format='onnx' (then convert with ONNX tools) or format='torch' (.pt2)."
        )
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}; expected one of {sorted(FORMATS)}.")
    if format == "onnx":
        return export_onnx(model, path, input_signature=input_signature, verbose=verbose, **kwargs)
    return export_torch(model, path, input_signature=input_signature, verbose=verbose, **kwargs)
