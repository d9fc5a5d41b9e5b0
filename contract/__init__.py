"""The wire contract between the inference handler and the post-processing stage.

This package is the only code that ``handler/`` and ``postprocess/`` share. It depends on numpy
alone, so the post-processing image never pulls a model runtime in through it.
"""

from contract.faces import FrameFaces
from contract.frame import (
    SCHEMA,
    ContractError,
    FrameResult,
    decode_embedding,
    dumps,
    encode_embedding,
    from_dict,
    loads,
    to_dict,
)

__all__ = [
    "SCHEMA",
    "ContractError",
    "FrameFaces",
    "FrameResult",
    "decode_embedding",
    "dumps",
    "encode_embedding",
    "from_dict",
    "loads",
    "to_dict",
]
