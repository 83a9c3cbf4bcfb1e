"""Run the real pipeline once per corpus scenario and share the report across tests."""

from __future__ import annotations

import functools

from kpostmortem.inputs.dump import open_dump
from kpostmortem.pipeline import analyze, analyze_dump

from .corpus import dump_dir, dump_meta


@functools.cache
def report_of(name: str) -> dict:
    """The report dict of a scenario's dump, analysed with its debug info (cached)."""
    meta = dump_meta(name)
    report = analyze(str(dump_dir(name) / "vmcore"), meta["vmlinux"], meta["debuginfo"], command=[])
    return report.to_dict()


@functools.cache
def degraded_report(name: str) -> dict:
    """The report dict of a scenario's dump analysed without any debug info (cached)."""
    meta = dump_meta(name)
    dump = open_dump(meta["path"], None, [], allow_no_debug_info=True)
    assert dump.debug.degraded, f"{name}: a vmlinux was found in the standard places; the test needs none"
    report, _ctx = analyze_dump(dump, [])
    return report.to_dict()
