"""`gpt2qa serve`: an HTTP server for a trained model (FastAPI app, run by uvicorn).

The package, FastAPI "Bigger Applications" style:
  settings.py   ServeSettings, the server's settings (a frozen pydantic model; --help text)
  schemas.py    request and response bodies; Prediction -> AnswerResponse
  batcher.py    MicroBatcher: concurrent questions share one model call
  middleware.py body size/deadline and malformed-JSON guard, header deadline, one-line 422s
  app.py        routes and create_app; the pipeline is a dependency (`get_pipeline`)
  run.py        uvicorn settings, serve_in_thread, serve_forever
  __main__.py   `python -m gpt2qa.serve`: `main` hands its flags to the CLI's `serve`

Every name below is importable from `gpt2qa.serve`. They load on first use: `gpt2qa --help`
imports this package for its flags, and FastAPI, uvicorn and torch would cost it seconds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpt2qa.serve.app import (
        PAGE_HEADERS,
        create_app,
        get_batcher,
        get_pipeline,
        get_settings,
        load_page,
        model_info,
    )
    from gpt2qa.serve.batcher import MicroBatcher
    from gpt2qa.serve.middleware import (
        BodySizeLimit,
        body_problem,
        http_protocol,
        invalid_request,
        readable_errors,
        validation_message,
    )
    from gpt2qa.serve.run import LOOPBACK_HOSTS, serve_forever, serve_in_thread, uvicorn_config
    from gpt2qa.serve.schemas import (
        AnswerRequest,
        AnswerResponse,
        BatchRequest,
        BatchResponse,
        CandidateOut,
        ErrorResponse,
        Example,
        Examples,
        Health,
        Limits,
        ModelInfo,
        answer_from_prediction,
    )
    from gpt2qa.serve.settings import ServeSettings

__all__ = [
    "LOOPBACK_HOSTS", "PAGE_HEADERS", "AnswerRequest", "AnswerResponse", "BatchRequest",
    "BatchResponse", "BodySizeLimit", "CandidateOut", "ErrorResponse", "Example", "Examples",
    "Health", "Limits", "MicroBatcher", "ModelInfo", "ServeSettings", "answer_from_prediction",
    "body_problem",
    "create_app", "get_batcher", "get_pipeline", "get_settings", "http_protocol",
    "invalid_request", "load_page", "model_info", "readable_errors", "serve_forever",
    "serve_in_thread", "uvicorn_config", "validation_message",
]

# Searched in this order, lightest first, so that the CLI's names never load FastAPI or torch.
_MODULES = ("settings", "schemas", "batcher", "middleware", "app", "run")


def __getattr__(name: str) -> Any:
    if name in __all__:
        for module in _MODULES:
            found = importlib.import_module(f"{__name__}.{module}").__dict__.get(name)
            if found is not None:
                globals()[name] = found  # later look-ups skip this function
                return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
