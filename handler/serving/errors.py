"""Request errors of the inference server: each carries its HTTP status and a message for the client.

They subclass the toolkit's ``BaseInferenceToolkitError`` so the toolkit's ``Transformer`` maps them
to their status; the body the client sees is :func:`error_body` (a short JSON object), and any
traceback goes to the log only. Anything that is not a :class:`RequestError` is a bug and becomes a
500 with a generic message.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from sagemaker_inference.errors import BaseInferenceToolkitError


class RequestError(BaseInferenceToolkitError):
    """A request the server refuses; ``status_code`` is its HTTP status, ``message`` says why."""

    status: HTTPStatus = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str) -> None:
        super().__init__(int(self.status), message, self.status.phrase)

    def __str__(self) -> str:
        return f"{int(self.status)} {type(self).__name__}: {self.message}"


class EmptyBodyError(RequestError):
    """400: the request has no body."""


class BadImageError(RequestError):
    """400: the body is not an image this server decodes, or is truncated or corrupt."""


class PayloadTooLargeError(RequestError):
    """413: the body is over the payload limit (checked before anything is decoded)."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class ImageTooLargeError(RequestError):
    """413: the image's dimensions are over the pixel limit (checked from its header, before
    its pixels are decoded), which also stops decompression bombs."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UnsupportedContentTypeError(RequestError):
    """415: the Content-Type is not an image type this server accepts."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class NotAcceptableError(RequestError):
    """406: the Accept header allows no type this server produces (it produces application/json)."""

    status = HTTPStatus.NOT_ACCEPTABLE


def error_body(status: int, message: str, kind: str = "") -> bytes:
    """The JSON body of an error response, shaped like multi-model-server's own error bodies:
    ``{"code": 413, "type": "PayloadTooLargeError", "message": "..."}``."""
    kind = kind or HTTPStatus(status).phrase.replace(" ", "")
    return json.dumps({"code": int(status), "type": kind, "message": message}).encode("utf-8")
