"""ONNX export of lamina models, through ``torch.onnx.export`` (the dynamo exporter).

The model is traced by ``torch.export`` in inference mode with a dynamic batch axis
(the wrapper and signature come from ``lamina.export.torch_export``) and written as
one self-contained ``.onnx`` file whose inputs and outputs carry the model's names.
Needs the ``onnx`` and ``onnxscript`` packages (``pip install "lamina[export]"``).
"""

from __future__ import annotations

import importlib.util
import os

import torch

from lamina.export.torch_export import _failed, _prepare, _quiet_export, inference_mode

__all__ = ["export_onnx", "require"]

# Protobuf caps one file at 2 GiB; larger models keep their weights in a side file.
_SINGLE_FILE_LIMIT = 1_900_000_000


def require(*packages: str, extra: str) -> None:
    """Raise ImportError naming the pip extra when one of ``packages`` is not installed.

    >>> require("numpy", extra="export")
    >>> require("no_such_package_xyz", extra="export")
    Traceback (most recent call last):
    ...
    ImportError: This needs the package(s) no_such_package_xyz, which are not installed. Install them with: pip install "lamina[export]"
    """
    missing = [name for name in packages if not _installed(name)]
    if missing:
        raise ImportError(
            f"This needs the package(s) {', '.join(missing)}, which are not installed. "
            f'Install them with: pip install "lamina[{extra}]"'
        )


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or half-imported package counts as missing
        return False


def export_onnx(model, filepath, input_signature=None, verbose=None, opset_version=None, **kwargs) -> str:
    """Export ``model`` for inference as an ONNX file with a dynamic batch axis.

    Inputs are named after the model's ``Input`` tensors (or dict keys), outputs after
    the output layers (or dict keys); axis 0 is the symbolic dimension ``"batch"`` on
    every input and output. Run it with ``onnxruntime.InferenceSession(path)``.

    Args:
        model: a built lamina model.
        filepath: target path (conventionally ending in ``.onnx``).
        input_signature: optional input description (see
            ``lamina.export.model_signature``); needed only for subclassed models never called.
        verbose: print where the file was written (default True, as Keras).
        opset_version: ONNX opset to target (default: torch's choice).
        **kwargs: passed to ``torch.onnx.export`` (e.g. ``optimize=False``).

    Returns:
        The path written.

    Example:
    >>> import os, tempfile
    >>> import numpy as np, onnxruntime
    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dense
    >>> model = Sequential([Input((4,), name="x"), Dense(2, name="y")])
    >>> path = export_onnx(model, os.path.join(tempfile.mkdtemp(), "m.onnx"), verbose=False)
    >>> session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    >>> [(i.name, i.shape) for i in session.get_inputs()]
    [('x', ['batch', 4])]
    >>> session.run(["y"], {"x": np.ones((5, 4), "float32")})[0].shape
    (5, 2)
    """
    require("onnx", "onnxscript", extra="export")
    path = os.fspath(filepath)
    wrapper, sample, dynamic_shapes, signature = _prepare(model, input_signature)
    weight_bytes = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    kwargs.setdefault("external_data", weight_bytes > _SINGLE_FILE_LIMIT)
    try:
        with inference_mode(wrapper), _quiet_export():
            torch.onnx.export(
                wrapper, sample, path, dynamo=True, verbose=False, opset_version=opset_version,
                input_names=[s.name for s in signature.inputs],
                output_names=[s.name for s in signature.outputs],
                dynamic_shapes=dynamic_shapes, **kwargs,
            )
    except Exception as error:  # torch raises many unrelated types; one clear message instead
        raise _failed(model, "ONNX", error) from error
    if verbose is None or verbose:
        print(f"Saved artifact at '{path}'.")
    return path
