"""Predictors: one interface to run a saved model file on NumPy batches.

``load_predictor(path)`` opens a ``.lamina`` / ``.keras`` file (through
``lamina.saving.load_model``), an ``.onnx`` file (through onnxruntime) or a ``.pt2``
``torch.export`` program, and returns an object with the input / output signature and
``predict(list_of_arrays) -> list_of_arrays``. HTTP and batching live elsewhere.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from lamina.export.torch_export import ModelSignature, TensorSpec, model_signature

__all__ = ["Predictor", "LaminaPredictor", "OnnxPredictor", "TorchExportPredictor", "load_predictor",
           "MODEL_EXTENSIONS"]

MODEL_EXTENSIONS = (".lamina", ".keras", ".onnx", ".pt2")

# onnxruntime's type strings -> NumPy dtype names.
_ONNX_DTYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(bfloat16)": "bfloat16", "tensor(int8)": "int8", "tensor(int16)": "int16",
    "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(bool)": "bool",
}


class Predictor:
    """Base class: a model behind ``predict(list of arrays) -> list of arrays``.

    Subclasses set ``name``, ``format`` and ``signature`` (a ``ModelSignature``) and
    implement ``predict``; arrays come and go in signature order, batch axis first.
    """

    name: str = "model"
    format: str = ""
    signature: ModelSignature

    @property
    def inputs(self) -> list[TensorSpec]:
        """The input specs, in the order ``predict`` takes arrays."""
        return self.signature.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        """The output specs, in the order ``predict`` returns arrays."""
        return self.signature.outputs

    def predict(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Outputs for one batch: one array per input in, one per output back."""
        raise NotImplementedError

    def predict_in_batches(self, arrays: list[np.ndarray], batch_size: int = 32) -> list[np.ndarray]:
        """``predict`` over ``batch_size`` rows at a time, outputs concatenated."""
        total = int(arrays[0].shape[0])
        chunks = [self.predict([a[start:start + batch_size] for a in arrays])
                  for start in range(0, total, batch_size)]
        if not chunks:
            raise ValueError("predict received no data: the input arrays have zero rows.")
        return [np.concatenate(parts) for parts in zip(*chunks)]

    def metadata(self) -> dict:
        """Name, format, and the inputs' and outputs' names, shapes and dtypes (JSON types)."""
        return {"name": self.name, "format": self.format,
                "inputs": [s.to_json() for s in self.inputs], "outputs": [s.to_json() for s in self.outputs]}


class LaminaPredictor(Predictor):
    """Runs a lamina model in inference mode (``training=False``, no autograd).

    The predictor owns the model from then on: it moves it to ``config.get_device()``
    and leaves it in eval mode.

    Args:
        model: a built lamina model.
        name: name to report (default the model's name).

    Example:
    >>> import numpy as np
    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dense
    >>> predictor = LaminaPredictor(Sequential([Input((3,)), Dense(2)]))
    >>> [a.shape for a in predictor.predict([np.ones((4, 3), "float32")])]
    [(4, 2)]
    """

    format = "lamina"

    def __init__(self, model, name: str | None = None):
        from lamina import config

        self.model = model
        self.name = name or model.name
        self.device = config.get_device()
        model.to(self.device)
        model.eval()  # the predictor owns the model: inference mode for good
        self.signature = model_signature(model)

    def predict(self, arrays):
        tensors = [torch.as_tensor(a, device=self.device) for a in arrays]
        with torch.inference_mode():
            outputs = self.model(self.signature.pack_inputs(tensors), training=False)
        return [_to_numpy(t) for t in self.signature.flatten_outputs(outputs)]


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:  # NumPy has no bfloat16
        tensor = tensor.float()
    return tensor.numpy()


class OnnxPredictor(Predictor):
    """Runs an ``.onnx`` file with onnxruntime (CPU, or the providers given).

    Args:
        path: the ONNX file.
        providers: onnxruntime execution providers (default ``["CPUExecutionProvider"]``).
        intra_op_num_threads: threads per operator (default 0: onnxruntime's choice).

    Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from lamina import Sequential, Input
    >>> from lamina.export import export_onnx
    >>> from lamina.layers import Dense
    >>> path = os.path.join(tempfile.mkdtemp(), "m.onnx")
    >>> _ = export_onnx(Sequential([Input((3,), name="x"), Dense(2)]), path, verbose=False)
    >>> predictor = OnnxPredictor(path)
    >>> predictor.inputs, predictor.predict([np.ones((4, 3), "float32")])[0].shape
    ([TensorSpec(name='x', shape=(None, 3), dtype='float32')], (4, 2))
    """

    format = "onnx"

    def __init__(self, path, providers=None, intra_op_num_threads: int = 0):
        from lamina.export.onnx import require

        require("onnxruntime", extra="export")
        import onnxruntime

        path = os.fspath(path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(intra_op_num_threads)
        try:
            self.session = onnxruntime.InferenceSession(
                path, options, providers=providers or ["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own exception types do not derive from ValueError
            raise ValueError(f"{path!r} is not a valid ONNX model: {error}") from None
        self.name = os.path.splitext(os.path.basename(path))[0]
        self.signature = ModelSignature(
            [_onnx_spec(i) for i in self.session.get_inputs()],
            [_onnx_spec(o) for o in self.session.get_outputs()],
            list(range(len(self.session.get_inputs()))), list(range(len(self.session.get_outputs()))))

    def predict(self, arrays):
        feed = {spec.name: np.ascontiguousarray(a) for spec, a in zip(self.inputs, arrays)}
        return self.session.run(None, feed)


def _onnx_spec(node) -> TensorSpec:
    shape = tuple(s if isinstance(s, int) else None for s in (node.shape or ()))
    return TensorSpec(node.name, shape, _ONNX_DTYPES.get(node.type, node.type))


class TorchExportPredictor(Predictor):
    """Runs a ``.pt2`` ``torch.export`` program written by ``lamina.export.export_torch``.

    Loading a ``.pt2`` goes through ``torch.export.load``: serve only files you trust.

    Args:
        path: the ``.pt2`` file.

    Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from lamina import Sequential, Input
    >>> from lamina.export import export_torch
    >>> from lamina.layers import Dense
    >>> path = os.path.join(tempfile.mkdtemp(), "m.pt2")
    >>> _ = export_torch(Sequential([Input((3,)), Dense(2, name="y")]), path, verbose=False)
    >>> predictor = TorchExportPredictor(path)
    >>> [s.name for s in predictor.outputs], predictor.predict([np.ones((4, 3), "float32")])[0].shape
    (['y'], (4, 2))
    """

    format = "torch"

    def __init__(self, path):
        from lamina.export.torch_export import load_torch_signature

        path = os.fspath(path)
        try:
            signature = load_torch_signature(path)
            with warnings.catch_warnings():
                # torch 2.11 warns while reading its own archive format; nothing to act on.
                warnings.filterwarnings("ignore", message="The given buffer is not writable")
                program = torch.export.load(path)
        except Exception as error:  # zipfile / torch serialization errors of many types
            raise ValueError(f"{path!r} is not a valid torch.export (.pt2) file: {error}") from None
        if signature is None:
            raise ValueError(
                f"{path!r} has no lamina signature: serve .pt2 files written by lamina.export.export_torch "
                f"(or `lamina export MODEL out.pt2`)."
            )
        self.module = program.module()
        self.name = os.path.splitext(os.path.basename(path))[0]
        self.signature = signature

    def predict(self, arrays):
        with torch.inference_mode():
            outputs = self.module(self.signature.pack_inputs([torch.as_tensor(a) for a in arrays]))
        return [_to_numpy(t) for t in self.signature.flatten_outputs(outputs)]


def load_predictor(path, **kwargs) -> Predictor:
    """The predictor for a model file: ``.lamina`` / ``.keras``, ``.onnx`` or ``.pt2``.

    Raises FileNotFoundError for a missing file and ValueError for an unknown
    extension or a file that is not a valid model.

    Example:
    >>> import os, tempfile
    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dense
    >>> path = os.path.join(tempfile.mkdtemp(), "m.lamina")
    >>> Sequential([Input((3,), name="x"), Dense(2, name="y")]).save(path)
    >>> predictor = load_predictor(path)
    >>> predictor.format, [s.name for s in predictor.inputs], [s.name for s in predictor.outputs]
    ('lamina', ['x'], ['y'])
    """
    path = os.fspath(path)
    if not path.endswith(MODEL_EXTENSIONS):
        raise ValueError(
            f"Cannot serve {path!r}: expected a model file ending in {', '.join(MODEL_EXTENSIONS)}."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such model file: {path!r}.")
    if path.endswith(".onnx"):
        return OnnxPredictor(path, **kwargs)
    if path.endswith(".pt2"):
        return TorchExportPredictor(path)
    from lamina.saving import load_model

    return LaminaPredictor(load_model(path, compile=False), **kwargs)
