"""The HTTP server: FastAPI routes, request validation, and running it with uvicorn.

``create_app`` wraps a predictor (``lamina.serving.runtime``) and a ``DynamicBatcher``
in a FastAPI app: ``POST /v1/predict``, ``GET /v1/health``, ``GET /v1/metadata`` and
``GET /v1/stats``. Every malformed request gets a 4xx answer whose ``detail`` says what
was wrong; ``serve`` runs the app with uvicorn. Needs ``pip install "lamina[serve]"``.
"""

import asyncio
import json
import os

import numpy as np

from lamina.serving.batching import DynamicBatcher, Unavailable
from lamina.serving.runtime import LaminaPredictor, Predictor, load_predictor

__all__ = ["create_app", "serve", "parse_inputs", "RequestError", "DEFAULT_MAX_BODY_BYTES"]

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
               float: "number", type(None): "null"}


class RequestError(ValueError):
    """A request the server refuses: ``status`` is the HTTP code, the message says why.

    >>> RequestError(422, "bad shape").status
    422
    """

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------- validation
def _shape_text(shape) -> str:
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _numpy_dtype(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:  # e.g. bfloat16: NumPy has no such dtype; the model casts float32 itself
        return np.dtype("float32")


def _to_array(value, spec, max_rows: int) -> np.ndarray:
    name = spec.name
    if not isinstance(value, list):
        raise RequestError(422, f"Input {name!r} must be a JSON array of rows (shape {_shape_text(spec.shape)}); "
                                f"received a JSON {_JSON_TYPES.get(type(value), type(value).__name__)}.")
    if not value:
        raise RequestError(422, f"Input {name!r} has no rows; send at least one row.")
    if len(value) > max_rows:
        raise RequestError(413, f"Input {name!r} has {len(value)} rows; this server accepts at most {max_rows} "
                                f"rows per request. Split the request into smaller ones.")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        raise RequestError(422, f"Input {name!r} is not a rectangular array: every row must have the same "
                                f"shape {_shape_text(spec.shape[1:])}.") from None
    target = _numpy_dtype(spec.dtype)
    kind = array.dtype.kind
    if kind in "OUSV":
        raise RequestError(422, f"Input {name!r} holds strings, nulls or numbers out of range; expected "
                                f"numbers of dtype {spec.dtype}.")
    if kind == "b" and target.kind != "b":
        raise RequestError(422, f"Input {name!r} holds booleans; expected numbers of dtype {spec.dtype}.")
    if array.ndim != len(spec.shape) or any(s is not None and s != a for s, a in zip(spec.shape, array.shape)):
        raise RequestError(422, f"Input {name!r} expects shape {_shape_text(spec.shape)} (rows first); received "
                                f"an array of shape {_shape_text(array.shape)}.")
    return _cast(array, target, spec)


def _cast(array: np.ndarray, target: np.dtype, spec) -> np.ndarray:
    name = spec.name
    if target.kind == "b":
        if array.dtype.kind != "b":
            raise RequestError(422, f"Input {name!r} expects booleans (true / false).")
        return array
    if target.kind in "iu":
        if array.dtype.kind == "f" and not (np.isfinite(array).all() and (array == np.round(array)).all()):
            raise RequestError(422, f"Input {name!r} expects integers of dtype {spec.dtype}; received "
                                    f"non-integer values.")
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise RequestError(422, f"Input {name!r} has values outside the range of {spec.dtype} "
                                    f"[{info.min}, {info.max}].")
        return array.astype(target)
    with np.errstate(over="ignore", invalid="ignore"):
        cast = array.astype(target)
    if np.isinf(cast).any() and not np.isinf(array[np.isinf(cast)]).all():
        raise RequestError(422, f"Input {name!r} has values too large for {spec.dtype}.")
    return cast


def parse_inputs(payload, specs: list, max_rows: int = 1024) -> list[np.ndarray]:
    """Validate a decoded ``{"inputs": ...}`` body against ``specs``; one array per spec.

    A single-input model takes ``{"inputs": [[...], ...]}`` (or a dict naming its
    input); a model with several inputs takes ``{"inputs": {"name": [[...]], ...}}``.

    Raises:
        RequestError: with status 422 (wrong structure, shape or dtype) or 413 (more
            than ``max_rows`` rows); the message says what was expected.

    Example:
    >>> from lamina.export import TensorSpec
    >>> specs = [TensorSpec("x", (None, 2), "float32")]
    >>> parse_inputs({"inputs": [[1, 2], [3, 4]]}, specs)[0].dtype
    dtype('float32')
    >>> parse_inputs({"inputs": [[1, 2, 3]]}, specs)
    Traceback (most recent call last):
    ...
    lamina.serving.server.RequestError: Input 'x' expects shape (None, 2) (rows first); received an array of shape (1, 3).
    """
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise RequestError(422, 'The body must be a JSON object {"inputs": ...}; received a JSON '
                                f"{_JSON_TYPES.get(type(payload), type(payload).__name__)}"
                                f"{' without the key inputs' if isinstance(payload, dict) else ''}.")
    unknown = sorted(set(payload) - {"inputs"})
    if unknown:
        raise RequestError(422, f'Unknown key(s) {unknown} in the body; the only key is "inputs".')
    inputs, names = payload["inputs"], [s.name for s in specs]
    if isinstance(inputs, dict):
        missing, extra = [n for n in names if n not in inputs], sorted(set(inputs) - set(names))
        if missing or extra:
            raise RequestError(422, f"The model's inputs are named {names}; the request "
                                    f"{'lacks ' + str(missing) if missing else ''}"
                                    f"{' and ' if missing and extra else ''}"
                                    f"{'has unknown ' + str(extra) if extra else ''}.")
        values = [inputs[n] for n in names]
    elif len(specs) == 1:
        values = [inputs]
    else:
        raise RequestError(422, f"The model takes {len(specs)} inputs named {names}; send them as an object "
                                f'{{"inputs": {{"{names[0]}": [...], ...}}}}.')
    arrays = [_to_array(v, spec, max_rows) for v, spec in zip(values, specs)]
    rows = {n: a.shape[0] for n, a in zip(names, arrays)}
    if len(set(rows.values())) > 1:
        raise RequestError(422, f"All inputs must have the same number of rows; received {rows}.")
    return arrays


def _decode(body: bytes):
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise RequestError(400, "The body is not valid UTF-8 text; send JSON.") from None
    except json.JSONDecodeError as error:
        raise RequestError(400, f"Malformed JSON: {error.msg} at line {error.lineno}, column {error.colno}.") from None
    except RecursionError:
        raise RequestError(400, "Malformed JSON: nested too deeply.") from None


def _encode_outputs(outputs: list[np.ndarray], specs: list) -> dict:
    if len(outputs) == 1:
        return {"outputs": outputs[0].tolist()}
    return {"outputs": {spec.name: array.tolist() for spec, array in zip(specs, outputs)}}


# ---------------------------------------------------------------------------------- the app
def _as_predictor(model) -> Predictor:
    if isinstance(model, Predictor):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_predictor(model)
    if hasattr(model, "get_weights") and hasattr(model, "predict"):
        return LaminaPredictor(model)
    raise TypeError(
        f"create_app expects a model file path, a lamina model or a Predictor; received {type(model).__name__}."
    )


def create_app(model, max_batch_size: int = 64, max_rows: int = 1024, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_delay_ms: float = 2.0, max_queue_rows: int | None = None):
    """A FastAPI app serving ``model`` with dynamic batching.

    Args:
        model: a model file (``.lamina``, ``.keras``, ``.onnx``, ``.pt2``), a lamina model
            or a ``Predictor``.
        max_batch_size: most rows per model call. Default 64.
        max_rows: most rows in one request (more gives 413). Default 1024.
        max_body_bytes: largest request body (more gives 413). Default 16 MiB.
        max_delay_ms: how long a request waits for others to share its batch. Default 2.
        max_queue_rows: rows allowed to wait before requests get 503 (default 100 batches).

    Example:
    >>> from lamina import Sequential, Input
    >>> from lamina.layers import Dense
    >>> app = create_app(Sequential([Input((3,)), Dense(2)]))
    >>> sorted(r.path for r in app.routes if r.path.startswith("/v1"))
    ['/v1/health', '/v1/metadata', '/v1/predict', '/v1/stats']
    """
    from lamina.export.onnx import require

    require("fastapi", extra="serve")
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException

    for name, value in (("max_rows", max_rows), ("max_body_bytes", max_body_bytes)):
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive int; received {value!r}.")
    predictor = _as_predictor(model)
    batcher = DynamicBatcher(predictor.predict, max_batch_size, max_delay_ms, max_queue_rows)
    limits = {"max_batch_size": int(max_batch_size), "max_rows": int(max_rows),
              "max_body_bytes": int(max_body_bytes), "max_delay_ms": float(max_delay_ms)}

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, batcher.close)

    app = FastAPI(title=f"lamina: {predictor.name}", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.predictor, app.state.batcher = predictor, batcher

    def error(status: int, message: str):
        return JSONResponse({"detail": message}, status_code=status)

    @app.exception_handler(RequestError)
    async def request_error(request, exc: RequestError):
        return error(exc.status, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.get("/v1/health")
    async def health():
        return {"status": "ok", "model": predictor.name}

    @app.get("/v1/metadata")
    async def metadata():
        from lamina import __version__

        return {**predictor.metadata(), **limits, "lamina_version": __version__}

    @app.get("/v1/stats")
    async def stats():
        return batcher.stats()

    @app.post("/v1/predict")
    async def predict(request: Request):
        body = await _read_body(request, limits["max_body_bytes"])
        arrays = parse_inputs(_decode(body), predictor.inputs, limits["max_rows"])
        try:
            outputs = await asyncio.wrap_future(batcher.submit(arrays))
        except Unavailable as exc:
            return error(503, str(exc))
        except Exception as exc:  # the model's own error: report it, keep serving
            return error(422, f"The model could not run on these inputs: {type(exc).__name__}: {exc}")
        # allow_nan: a model can output NaN / Infinity; Python's json reads them back.
        content = json.dumps(_encode_outputs(outputs, predictor.outputs), allow_nan=True)
        return Response(content, media_type="application/json")

    return app


async def _read_body(request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    too_large = f"The request body is larger than this server's limit of {limit} bytes; send fewer rows per request."
    if length is not None and length.isdigit() and int(length) > limit:
        raise RequestError(413, too_large)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def serve(model, host: str = "127.0.0.1", port: int = 8000, max_batch_size: int = 64, max_rows: int = 1024,
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_delay_ms: float = 2.0, log_level: str = "info",
          access_log: bool = False) -> None:
    """Serve ``model`` over HTTP with uvicorn until interrupted (Ctrl-C).

    Args:
        model: a model file path, a lamina model or a ``Predictor`` (see ``create_app``).
        host: interface to bind. Default ``"127.0.0.1"`` (this machine only).
        port: TCP port. Default 8000.
        max_batch_size, max_rows, max_body_bytes, max_delay_ms: see ``create_app``.
        log_level: uvicorn's log level. Default ``"info"``.
        access_log: log every request (slower under load). Default False.
    """
    from lamina.export.onnx import require

    require("fastapi", "uvicorn", extra="serve")
    import uvicorn

    app = create_app(model, max_batch_size=max_batch_size, max_rows=max_rows, max_body_bytes=max_body_bytes,
                     max_delay_ms=max_delay_ms)
    predictor = app.state.predictor
    print(f"lamina: serving {predictor.name!r} ({predictor.format}) at http://{host}:{port}/v1/predict", flush=True)
    uvicorn.run(app, host=host, port=int(port), log_level=log_level, access_log=access_log)
