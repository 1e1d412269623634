"""The API's JSON parser: DRF's, refusing JSON nested deeper than any body of the API needs.

Python's decoder recurses once per level of nesting: a body of 10,000 ``[`` raised a
``RecursionError``, which DRF does not catch (it turns only ``ValueError`` into 400
``parse_error``), so the API answered 500.  Too deep a body is now 400 ``parse_error`` like
any other JSON the API cannot read, whether the decoder gave up or the result is deeper
than ``MAX_DEPTH``: a depth the decoder survives could still exhaust the recursion of the
code that walks the data afterwards (validation, error messages, the audit record).
Every view parses JSON with this class (``DEFAULT_PARSER_CLASSES``); form and multipart
bodies are flat key-value pairs, with Django's limits on their number and size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

# The API's deepest body is an object of lists (a rule's methods, days, networks): 2 levels.
MAX_DEPTH = 32
TOO_DEEP = f"JSON parse error - nested deeper than {MAX_DEPTH} levels."


def nested_deeper_than(data: Any, limit: int) -> bool:
    """Whether ``data`` has objects or arrays nested more than ``limit`` levels (no recursion)."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, Mapping):
            children = list(value.values())
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(TOO_DEEP) from None
        if nested_deeper_than(data, MAX_DEPTH):
            raise ParseError(TOO_DEEP)
        return data
