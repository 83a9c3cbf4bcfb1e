"""Renderers: the report dict → text, JSON or Markdown. They never touch drgn."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kpostmortem.render.jsonfmt import render_json
from kpostmortem.render.markdown import render_markdown
from kpostmortem.render.text import render_text

RENDERERS: dict[str, Callable[..., str]] = {
    "text": render_text,
    "json": render_json,
    "markdown": render_markdown,
}


def render(report: dict[str, Any], fmt: str, **options: Any) -> str:
    """Render a report dict in the named format."""
    return RENDERERS[fmt](report, **options)


__all__ = ["render", "RENDERERS", "render_json", "render_markdown", "render_text"]
