"""The ``lamina`` command line: ``summary``, ``predict``, ``export`` and ``serve`` for saved models.

Each subcommand is a thin shell over the library (``lamina.saving``, ``lamina.export``,
``lamina.serving``). Mistakes a user can make (missing or invalid files, wrong shapes,
missing extras) end with a one-line message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

__all__ = ["main", "build_parser"]

_SAVED = (".lamina", ".keras")
_ANY_MODEL = _SAVED + (".onnx", ".pt2")


class _UsageError(Exception):
    """A mistake in the command's arguments or files: printed as one line, exit code 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, received {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, received {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``lamina`` command.

    >>> build_parser().parse_args(["export", "m.lamina", "m.onnx"]).command
    'export'
    """
    from lamina import __version__
    from lamina.serving.server import DEFAULT_MAX_BODY_BYTES

    parser = argparse.ArgumentParser(
        prog="lamina", description="Inspect, run, export and serve saved lamina models.",
        epilog="Run 'lamina COMMAND --help' for the options of each command.")
    parser.add_argument("--version", action="version", version=f"lamina {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    summary = commands.add_parser(
        "summary", help="print a model's layers, shapes and parameter counts",
        description="Print the summary table of a .lamina / .keras model, or the inputs and outputs "
                    "of an .onnx / .pt2 file.")
    summary.add_argument("model", metavar="MODEL", help="model file (.lamina, .keras, .onnx or .pt2)")

    predict = commands.add_parser(
        "predict", help="run a model on a .npy / .npz file",
        description="Run a model on the arrays in INPUT and save the outputs. INPUT is a .npy file "
                    "(single-input models) or a .npz file with one array per input name.")
    predict.add_argument("model", metavar="MODEL", help="model file (.lamina, .keras, .onnx or .pt2)")
    predict.add_argument("input", metavar="INPUT", help="input arrays, rows first (.npy or .npz)")
    predict.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                         help="where to write the outputs: .npy (one output) or .npz (named outputs)")
    predict.add_argument("--batch-size", type=_positive_int, default=32, help="rows per model call (default 32)")

    export = commands.add_parser(
        "export", help="export a model to ONNX (.onnx) or torch.export (.pt2)",
        description="Export a .lamina / .keras model for inference, with a dynamic batch axis.")
    export.add_argument("model", metavar="MODEL", help="model file (.lamina or .keras)")
    export.add_argument("output", metavar="OUTPUT", help="target file, .onnx or .pt2")
    export.add_argument("--format", choices=["onnx", "torch"], default=None,
                        help="export format (default: from OUTPUT's extension)")
    export.add_argument("--opset", type=_positive_int, default=None, help="ONNX opset version (default: torch's)")

    serve = commands.add_parser(
        "serve", help="serve a model over HTTP (POST /v1/predict)",
        description="Serve a model with FastAPI and uvicorn, batching concurrent requests. "
                    "Endpoints: POST /v1/predict, GET /v1/health, GET /v1/metadata, GET /v1/stats.")
    serve.add_argument("model", metavar="MODEL", help="model file (.lamina, .keras, .onnx or .pt2)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    serve.add_argument("--max-batch-size", type=_positive_int, default=64,
                       help="most rows per model call when batching requests (default 64)")
    serve.add_argument("--max-rows", type=_positive_int, default=1024,
                       help="most rows in one request; more is refused with 413 (default 1024)")
    serve.add_argument("--max-body-bytes", type=_positive_int, default=DEFAULT_MAX_BODY_BYTES,
                       help=f"largest request body; larger is refused with 413 (default {DEFAULT_MAX_BODY_BYTES})")
    serve.add_argument("--max-delay-ms", type=_non_negative_float, default=2.0,
                       help="how long a request waits for others to share its batch (default 2)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                       help="uvicorn log level (default info)")
    serve.add_argument("--access-log", action="store_true", help="log every request (slower under load)")
    return parser


def _model_file(path: str, allowed: tuple[str, ...]) -> str:
    if not path.endswith(allowed):
        raise _UsageError(f"unsupported model file {path!r}: expected a file ending in {', '.join(allowed)}")
    if not os.path.exists(path):
        raise _UsageError(f"no such file: {path!r}")
    if not os.path.isfile(path):
        raise _UsageError(f"{path!r} is not a file")
    return path


def _load_saved(path: str):
    from lamina.saving import load_model

    return load_model(path, compile=False)


def _summary(args) -> None:
    path = _model_file(args.model, _ANY_MODEL)
    if path.endswith(_SAVED):
        _load_saved(path).summary()
        return
    from lamina.serving.runtime import load_predictor

    predictor = load_predictor(path)
    print(f"{predictor.name} ({predictor.format})")
    for title, specs in (("Inputs", predictor.inputs), ("Outputs", predictor.outputs)):
        print(f"{title}:")
        for spec in specs:
            shape = "(" + ", ".join("None" if s is None else str(s) for s in spec.shape) + ")"
            print(f"  {spec.name:<24} {shape:<24} {spec.dtype}")


def _read_inputs(path: str, specs) -> list[np.ndarray]:
    if not path.endswith((".npy", ".npz")):
        raise _UsageError(f"unsupported input file {path!r}: expected a .npy or .npz file")
    if not os.path.isfile(path):
        raise _UsageError(f"no such file: {path!r}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise _UsageError(f"cannot read {path!r} as a NumPy file: {error}") from None
    names = [s.name for s in specs]
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            raise _UsageError(f"the model takes {len(specs)} inputs {names}; pass a .npz file with one array "
                              f"per name (np.savez(path, **arrays))")
        arrays = [loaded]
    else:
        with loaded:
            keys = list(loaded.files)
            if len(specs) == 1 and len(keys) == 1:
                keys = names = [keys[0]]
            missing = [n for n in names if n not in keys]
            if missing:
                raise _UsageError(f"{path!r} has arrays {keys}; the model's inputs are named {names} "
                                  f"(missing {missing})")
            try:
                arrays = [loaded[n] for n in names]
            except ValueError as error:
                raise _UsageError(f"cannot read {path!r}: {error}") from None
    return [_conform(a, spec, path) for a, spec in zip(arrays, specs)]


def _conform(array: np.ndarray, spec, path: str) -> np.ndarray:
    shape = spec.shape
    if array.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, array.shape)):
        expected = "(" + ", ".join("None" if s is None else str(s) for s in shape) + ")"
        raise _UsageError(f"input {spec.name!r} expects shape {expected} (rows first); {path!r} holds an "
                          f"array of shape {array.shape}")
    if array.shape[0] == 0:
        raise _UsageError(f"input {spec.name!r} in {path!r} has no rows")
    if array.dtype.kind not in "biuf":
        raise _UsageError(f"input {spec.name!r} in {path!r} has dtype {array.dtype}; expected numbers")
    try:
        target = np.dtype(spec.dtype)
    except TypeError:
        return array
    if target.kind in "iu" and array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
        raise _UsageError(f"input {spec.name!r} expects integers ({spec.dtype}); {path!r} holds fractional values")
    return array.astype(target, copy=False)


def _predict(args) -> None:
    model_path = _model_file(args.model, _ANY_MODEL)
    output = args.output
    if not output.endswith((".npy", ".npz")):
        raise _UsageError(f"unsupported output file {output!r}: expected a .npy or .npz file")
    if model_path.endswith(_SAVED):
        from lamina.export import model_signature

        model = _load_saved(model_path)
        signature = model_signature(model)
        arrays = _read_inputs(args.input, signature.inputs)
        result = model.predict(signature.pack_inputs(arrays), batch_size=args.batch_size, verbose=0)
        outputs, specs = signature.flatten_outputs(result), signature.outputs
    else:
        from lamina.serving.runtime import load_predictor

        predictor = load_predictor(model_path)
        arrays = _read_inputs(args.input, predictor.inputs)
        outputs, specs = predictor.predict_in_batches(arrays, args.batch_size), predictor.outputs
    if output.endswith(".npy"):
        if len(outputs) != 1:
            raise _UsageError(f"the model has {len(outputs)} outputs {[s.name for s in specs]}; write them to a "
                              f".npz file instead of {output!r}")
        np.save(output, np.asarray(outputs[0]))
    else:
        np.savez(output, **{s.name: np.asarray(o) for s, o in zip(specs, outputs)})
    print(f"Wrote predictions for {len(arrays[0])} rows to {output}.")


def _export(args) -> None:
    from lamina.export import export_model

    path = _model_file(args.model, _SAVED)
    if args.format is None and not args.output.endswith((".onnx", ".pt2")):
        raise _UsageError(f"cannot tell the export format from {args.output!r}: use a name ending in .onnx or "
                          f".pt2, or pass --format onnx|torch")
    kwargs = {"opset_version": args.opset} if args.opset is not None else {}
    if kwargs and (args.format or ("onnx" if args.output.endswith(".onnx") else "torch")) != "onnx":
        raise _UsageError("--opset applies to ONNX exports only")
    export_model(_load_saved(path), args.output, format=args.format, **kwargs)


def _serve(args) -> None:
    from lamina.serving import serve

    path = _model_file(args.model, _ANY_MODEL)
    serve(path, host=args.host, port=args.port, max_batch_size=args.max_batch_size, max_rows=args.max_rows,
          max_body_bytes=args.max_body_bytes, max_delay_ms=args.max_delay_ms, log_level=args.log_level,
          access_log=args.access_log)


_COMMANDS = {"summary": _summary, "predict": _predict, "export": _export, "serve": _serve}


def main(argv: list[str] | None = None) -> int:
    """Run the ``lamina`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    0 on success; 2 for usage mistakes and missing or invalid files (a one-line message
    on stderr); 1 when a valid model cannot be exported.

    >>> main(["summary", "missing.lamina"])
    2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and argparse's own usage errors
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    prefix = f"lamina {args.command}: error:"
    try:
        _COMMANDS[args.command](args)
    except _UsageError as error:
        print(f"{prefix} {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError, TypeError, KeyError, ImportError) as error:
        # Invalid files (FormatError is a ValueError), unreadable paths, missing extras.
        message = str(error) or type(error).__name__
        print(f"{prefix} {message}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # e.g. a model torch.export cannot trace
        print(f"{prefix} {error}", file=sys.stderr)
        return 1
    return 0
