"""Serving saved models over HTTP: predictors, dynamic batching and the FastAPI server.

``lamina.serving.serve("model.lamina")`` (or ``lamina serve model.lamina``) answers
``POST /v1/predict``; see ``docs/deploy.md``. Importing this package needs neither
FastAPI nor uvicorn: only ``create_app`` and ``serve`` do.
"""

from lamina.serving.batching import DynamicBatcher, Overloaded, Unavailable
from lamina.serving.runtime import (
    MODEL_EXTENSIONS,
    LaminaPredictor,
    OnnxPredictor,
    Predictor,
    TorchExportPredictor,
    load_predictor,
)
from lamina.serving.server import DEFAULT_MAX_BODY_BYTES, RequestError, create_app, parse_inputs, serve

__all__ = [
    "serve", "create_app", "parse_inputs", "RequestError", "load_predictor", "Predictor",
    "LaminaPredictor", "OnnxPredictor", "TorchExportPredictor", "DynamicBatcher", "Overloaded",
    "Unavailable", "MODEL_EXTENSIONS", "DEFAULT_MAX_BODY_BYTES",
]
