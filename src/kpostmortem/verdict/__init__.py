"""Verdict engine: rules over the report's sections (no drgn) → one Verdict."""

from typing import TYPE_CHECKING

__all__ = ["decide"]

if TYPE_CHECKING:
    from kpostmortem.verdict.engine import decide


def __getattr__(name: str):
    # The engine is imported on first use: the CLI reads a known-bugs file
    # (kpostmortem.verdict.known) while drgn loads the dump, without the engine's imports.
    if name == "decide":
        from kpostmortem.verdict.engine import decide

        return decide
    raise AttributeError(name)
