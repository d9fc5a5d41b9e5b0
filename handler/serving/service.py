"""The handler service multi-model-server runs in each worker: ``handler.serving.service:handle``.

``HandlerService`` (the toolkit's ``DefaultHandlerService``) injects a :class:`FaceTransformer`
(the toolkit's ``Transformer``) around :class:`FaceInferenceHandler`, whose hooks are:

- ``default_model_fn``: ``load_pipeline`` once per worker, at worker start, then one warm-up frame;
- ``default_input_fn``: :func:`handler.serving.decode.decode_image` (bytes + Content-Type -> upright RGB);
- ``default_predict_fn``: ``FacePipeline.analyse``;
- ``default_output_fn``: ``contract.dumps`` -> ``application/json``.

multi-model-server calls the module function :func:`handle` with ``data=None`` when a worker starts
(an exception there fails the worker, so a missing model never leaves a worker that "loaded" and
fails every frame), then once per batch of requests. Errors are :mod:`handler.serving.errors` types: the
client gets their status and a short JSON message, the log gets the rest.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
from sagemaker_inference import utils
from sagemaker_inference.default_handler_service import DefaultHandlerService
from sagemaker_inference.default_inference_handler import DefaultInferenceHandler
from sagemaker_inference.errors import BaseInferenceToolkitError
from sagemaker_inference.transformer import Transformer

from contract import FrameResult, dumps
from handler.pipeline import FacePipeline, load_pipeline
from handler.serving.config import RUN_DIR_ENV, ServingConfig
from handler.serving.decode import DecodeLimits, decode_image
from handler.serving.errors import NotAcceptableError, error_body

log = logging.getLogger(__name__)

JSON = "application/json"


def check_accept(accept: str | None) -> str:
    """The response type for an Accept header: application/json when it allows it (absent,
    ``*/*``, ``application/*``, ``application/json``), else 406."""
    if not accept or not accept.strip():
        return JSON
    for part in accept.split(","):
        kind, *params = (p.strip().lower() for p in part.split(";"))
        if any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue
        if kind in (JSON, "application/*", "*/*", "*"):
            return JSON
    raise NotAcceptableError(f"Accept {accept.strip()!r} allows no type this server produces; it answers {JSON}")


class FaceInferenceHandler(DefaultInferenceHandler):
    """The four toolkit hooks for face analysis; the config is read at model load, never at import."""

    def __init__(self, config: ServingConfig | None = None) -> None:
        self._config = config
        self.providers: dict[str, str] = {}  # model file -> execution provider its session got

    @property
    def config(self) -> ServingConfig:
        if self._config is None:
            self._config = ServingConfig.from_env()
        return self._config

    @property
    def limits(self) -> DecodeLimits:
        return DecodeLimits(max_bytes=self.config.max_payload_bytes, max_pixels=self.config.max_pixels)

    def default_model_fn(self, model_dir: str | None, context: Any = None) -> FacePipeline:
        """Load the models from ``config.model_dir`` (MMS's ``model_dir`` is the same directory, or
        an empty stand-in when that one does not exist)."""
        config = self.config
        if config.pipeline.device != "cpu":
            _preload_cuda_libraries()
        pipeline = load_pipeline(config.pipeline)
        self.providers = pipeline.providers
        started = time.perf_counter()
        pipeline.analyse(np.zeros((360, 640, 3), np.uint8))  # warm-up: a worker is ready only once it ran
        log.info("warm-up frame analysed in %.0f ms", 1000 * (time.perf_counter() - started))
        return pipeline

    def default_input_fn(self, input_data: bytes, content_type: str | None, context: Any = None) -> np.ndarray:
        return decode_image(input_data, content_type, self.limits)

    def default_predict_fn(self, data: np.ndarray, model: FacePipeline, context: Any = None) -> FrameResult:
        return model.analyse(data)

    def default_output_fn(self, prediction: FrameResult, accept: str | None, context: Any = None
                          ) -> tuple[bytes, str]:
        return dumps(prediction), check_accept(accept)


def _preload_cuda_libraries() -> None:
    """onnxruntime-gpu installed with its ``[cuda,cudnn]`` extras finds the CUDA and cuDNN libraries
    in the NVIDIA wheels only after ``preload_dlls`` (onnxruntime >= 1.21); harmless elsewhere."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers() and hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception as exc:  # a system CUDA install may still be found by the provider itself
            log.warning("onnxruntime.preload_dlls() failed (%s); relying on the system's CUDA libraries", exc)


def _headers(context: Any, index: int) -> dict[str, str]:
    processors = context.request_processor or []
    processor = processors[index] if index < len(processors) else processors[0] if processors else None
    return dict(processor.get_request_properties()) if processor is not None else {}


def _body(item: Any) -> Any:
    if isinstance(item, dict):
        for key in ("body", "data"):
            if key in item:
                return item[key]
        return next(iter(item.values()), b"")
    return item


class FaceTransformer(Transformer):
    """The toolkit's Transformer bound to our hooks (no user-module lookup), with per-request headers,
    Accept checked before decoding, and JSON error bodies without tracebacks."""

    def __init__(self, handler: FaceInferenceHandler) -> None:
        super().__init__(default_inference_handler=handler)
        self.handler = handler

    def _validate_user_module_and_set_functions(self) -> None:
        h = self.handler
        self._model_fn = h.default_model_fn
        self._input_fn = h.default_input_fn
        self._predict_fn = h.default_predict_fn
        self._output_fn = h.default_output_fn
        self._transform_fn = self._default_transform_fn
        self._pre_model_fn = None
        self._model_warmup_fn = None

    @staticmethod
    def handle_error(context: Any, inference_exception: BaseInferenceToolkitError, trace: str,
                     index: int = 0) -> bytes:
        status = int(inference_exception.status_code)
        if status >= 500:
            log.error("request failed with %d: %s\n%s", status, inference_exception.message, trace)
        else:
            log.warning("request refused with %d: %s", status, inference_exception.message)
        context.set_response_status(code=status, phrase=utils.remove_crlf(HTTPStatus(status).phrase),
                                    idx=index)
        context.set_response_content_type(index, JSON)
        return error_body(status, inference_exception.message, type(inference_exception).__name__)

    def transform(self, data: list[Any], context: Any) -> list[bytes]:
        responses: list[bytes] = []
        for index, item in enumerate(data):
            try:
                self.validate_and_initialize(model_dir=context.system_properties.get("model_dir"),
                                             context=context)
                headers = _headers(context, index)
                content_type = utils.retrieve_content_type_header(headers)
                accept = headers.get("Accept") or headers.get("accept")
                check_accept(accept)
                image = self._input_fn(_body(item), content_type)
                payload, response_type = self._output_fn(self._predict_fn(image, self._model), accept)
                context.set_response_content_type(index, response_type)
                responses.append(payload)
            except BaseInferenceToolkitError as exc:
                responses.append(self.handle_error(context, exc, traceback.format_exc(), index))
            except Exception as exc:  # a bug, not bad input: 500, details in the log only
                error = BaseInferenceToolkitError(500, f"internal error analysing the frame ({type(exc).__name__}); "
                                                  "see the server log", "Internal Server Error")
                responses.append(self.handle_error(context, error, traceback.format_exc(), index))
        return responses


class HandlerService(DefaultHandlerService):
    """multi-model-server's handler service: the toolkit's, with our Transformer injected."""

    def __init__(self, config: ServingConfig | None = None) -> None:
        super().__init__(transformer=FaceTransformer(FaceInferenceHandler(config)))

    def initialize(self, context: Any) -> None:
        """Load the models (once, in this worker); report ready or failed to the supervisor."""
        started = time.perf_counter()
        try:
            gpu = context.system_properties.get("gpu_id")
            if gpu is not None and self._service.handler.config.pipeline.device != "cpu":
                os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)  # one GPU per worker, before any CUDA init
            self._service.validate_and_initialize(model_dir=context.system_properties.get("model_dir"),
                                                  context=context)
        except Exception as exc:
            log.error("worker %d could not load its models: %s", os.getpid(), exc)
            _report("error", {"pid": os.getpid(), "message": str(exc), "type": type(exc).__name__})
            raise
        _report("ready", worker_facts(self._service.handler, self._service._model, time.perf_counter() - started))


def worker_facts(handler: FaceInferenceHandler, pipeline: FacePipeline, load_s: float) -> dict[str, Any]:
    """What a worker reports once ready: models, execution providers, memory (no biometric data)."""
    import psutil

    used = sorted(set(handler.providers.values()))
    facts = {
        "pid": os.getpid(),
        "detector": pipeline.detector.name,
        "embedder": pipeline.embedder.name if pipeline.embedder is not None else "",
        "provider": ",".join(used) if used else "unknown",
        "sessions": handler.providers,
        "rss_bytes": psutil.Process().memory_info().rss,
        "load_s": round(load_s, 3),
    }
    log.info("worker ready: %s", facts)
    return facts


def _report(kind: str, facts: dict[str, Any]) -> None:
    run_dir = os.environ.get(RUN_DIR_ENV)
    if not run_dir:
        return
    path = Path(run_dir) / f"{kind}-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(facts))
    tmp.replace(path)


_service: HandlerService | None = None


def handle(data: list[Any] | None, context: Any) -> list[bytes] | None:
    """multi-model-server's entry point: ``data=None`` at worker start (load), else a batch."""
    global _service
    if _service is None:
        _service = HandlerService()
    if data is None:
        _service.initialize(context)
        return None
    return _service.handle(data, context)
