"""`Obj`: a Kubernetes object (or any part of one) as its JSON decodes, the one alias every
module that reads or builds API objects uses. Imports nothing of qmo."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
