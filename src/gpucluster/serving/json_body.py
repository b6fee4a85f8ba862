"""Bounds on a JSON request body, checked before anything parses it: its size and its nesting.

Python's JSON parser recurses once per nesting level: a body of a few thousand nested arrays,
valid JSON, would end in a RecursionError (a 500) in whichever parser met it first (ours,
pydantic's, vLLM's). Counting the brackets outside strings costs one pass over the bytes, and
nothing at all for the usual body, which holds fewer brackets than the limit.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gpucluster.config.schema import EdgeConfig, body_size_text
from gpucluster.serving.errors import ApiError

MAX_DEPTH = 64  # OpenAI's structured outputs allow 10 levels of schema; tools nest a few more
DEFAULT_MAX_BODY_BYTES = EdgeConfig().max_body_bytes  # the edge's default limit

# A JSON string (escapes included) or one bracket: strings are skipped whole, so brackets in
# text do not count.
_STRING_OR_BRACKET = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_OPENERS = frozenset(b"[{")
# What may carry a lone surrogate into the parsed body: an escape of half a pair, half a pair
# encoded as UTF-8 bytes (Python's parser decodes those), or a UTF-16/32 body (NUL bytes, which
# UTF-8 JSON holds only escaped).
_MAY_HOLD_SURROGATES = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]|\x00")


def too_large(max_bytes: int) -> ApiError:
    """The 413 nginx gives a body over `platform.edge.max_body_mib`, in the same words."""
    return ApiError(
        413,
        f"The request body is larger than {body_size_text(max_bytes)}.",
        code="request_too_large",
    )


def nesting_depth_exceeds(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text `raw` nests arrays and objects deeper than `limit` levels."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(raw):
        token = match.group()
        if len(token) != 1:
            continue  # a string
        if token[0] in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def check_depth(raw: bytes) -> None:
    """A 400 `invalid_json` for a body nesting deeper than MAX_DEPTH."""
    if nesting_depth_exceeds(raw):
        raise ApiError(
            400,
            f"The request body nests arrays and objects deeper than {MAX_DEPTH} levels.",
            code="invalid_json",
        )


def load_json(raw: bytes) -> Any:
    """The parsed body; a 400 `invalid_json` for one too deep, not JSON at all, or whose text
    is not Unicode (a lone UTF-16 surrogate, escaped or encoded as bytes, which Python's
    parser lets through)."""
    check_depth(raw)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if _MAY_HOLD_SURROGATES.search(raw):
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(
                400,
                "The request body's text holds a lone UTF-16 surrogate (an unpaired code point "
                "in \\ud800-\\udfff), which is not a character.",
                code="invalid_json",
            ) from None
    return data
