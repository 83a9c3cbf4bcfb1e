"""JSON renderer: the report dict as one JSON object (the documented contract)."""

from __future__ import annotations

import json
from typing import Any


def render_json(report: dict[str, Any], **_options: Any) -> str:
    return json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"
