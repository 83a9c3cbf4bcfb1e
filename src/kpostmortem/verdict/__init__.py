"""Verdict engine: rules over the report's sections (no drgn) → one Verdict."""

from kpostmortem.verdict.engine import decide

__all__ = ["decide"]
