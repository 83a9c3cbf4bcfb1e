"""Renderers from the golden normalised reports: no dump needed, every format, every scenario."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kpostmortem.render import render

GOLDEN = sorted((Path(__file__).parent.parent / "golden").glob("*.json"))


def test_there_are_golden_reports():
    assert len(GOLDEN) >= 10, "tests/golden/*.json missing: run pytest tests/vmcore --regen-golden"


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_text_report_leads_with_the_verdict_and_fits_100_columns(path):
    report = json.loads(path.read_text())
    text = render(report, "text")
    lines = text.splitlines()
    title = " ".join(line.strip() for line in lines[2:4])  # a long title wraps under itself
    assert lines[2].startswith("VERDICT  ") and report["verdict"]["title"] in "VERDICT " + title
    assert all(len(line) <= 100 for line in lines if not line.startswith("  host ")), [
        line for line in lines if len(line) > 100
    ]
    for frame in report["stack"]["frames"][:40]:
        if frame.get("function"):
            assert frame["function"] in text
    assert "\033[" not in text, "no colour unless asked"
    assert "\033[" in render(report, "text", color=True)


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_markdown_report_is_a_ticket(path):
    report = json.loads(path.read_text())
    md = render(report, "markdown")
    assert md.startswith(f"## {report['verdict']['title']}")
    assert md.count("```") % 2 == 0, "unbalanced code fences"
    assert "| Kernel |" in md
    for e in report["verdict"]["evidence"]:
        assert e["text"] in md


@pytest.mark.parametrize("path", GOLDEN[:3], ids=lambda p: p.stem)
def test_markdown_cap_says_what_it_cut(path):
    report = json.loads(path.read_text())
    md = render(report, "markdown", max_bytes=1500)
    assert len(md.encode()) <= 1500
    assert "more lines omitted" in md
    assert md.count("```") % 2 == 0


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_json_round_trips(path):
    report = json.loads(path.read_text())
    assert json.loads(render(report, "json")) == report
