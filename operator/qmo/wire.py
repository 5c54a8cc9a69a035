"""`Obj`: a Kubernetes object (or any part of one) as its JSON decodes, the one alias every
module that reads or builds API objects uses; `json_type` names what a value decoded as, for
messages about a file that holds something else. Imports nothing of qmo."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


_JSON_TYPES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    type(None): "null",
}


def json_type(value: Any) -> str:
    """'a list', 'a string', 'a number'... : what a YAML or JSON value is, in words."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return _JSON_TYPES.get(type(value), f"a {type(value).__name__}")
