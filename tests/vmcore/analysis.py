"""Run the real pipeline once per corpus scenario and share the report across tests."""

from __future__ import annotations

import functools

from kpostmortem.pipeline import analyze

from .corpus import dump_dir, dump_meta


@functools.cache
def report_of(name: str) -> dict:
    """The report dict of a scenario's dump, analysed with its debug info (cached)."""
    meta = dump_meta(name)
    report = analyze(str(dump_dir(name) / "vmcore"), meta["vmlinux"], meta["debuginfo"], command=[])
    return report.to_dict()
