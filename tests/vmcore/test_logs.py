"""A crash seen as a text log gets the verdict of the same crash seen as a dump.

Every corpus scenario's serial console capture (console.log, saved by make-vmcores beside the
dump) and the dump's own kernel log written out as kdump's dmesg file would be: same category,
function, module, title and signature as the dump's report.
"""

from __future__ import annotations

import pytest
from drgn.helpers.linux.printk import get_dmesg

from kpostmortem.inputs.log import open_log
from kpostmortem.logreport import analyze_log, log_report

from .analysis import report_of
from .corpus import dump_meta, load_manifest, open_program

SCENARIOS = [s for s in load_manifest() if not s["expect"].get("damaged")]
SAME = ("category", "function", "module", "title", "signature")


def _same_verdict(name: str, log_verdict: dict) -> None:
    dump_verdict = report_of(name)["verdict"]
    got = {k: log_verdict[k] for k in SAME}
    want = {k: dump_verdict[k] for k in SAME}
    assert got == want, f"{name}: the log's verdict differs from the dump's"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s["name"])
def test_console_log_gets_the_dumps_verdict(scenario):
    name = scenario["name"]
    source = open_log(dump_meta(name)["console_log"])
    if not source.analysis.records:
        # The report never reached the serial console (a double fault on the stack guard page
        # is printed, but the capture kernel boots before the console drains): the dump's own
        # log buffer must have it, and the console must show the machine going down.
        assert report_of(name)["log"]["records"], f"{name}: no crash record in the dump's log either"
        assert source.analysis.boots, f"{name}: no report and no reboot in the console log"
        return
    report = log_report(source, []).to_dict()
    assert report["dump"]["source"] == "log"
    _same_verdict(name, report["verdict"])
    assert report["verdict"]["confidence"] >= 0.5
    assert report["summary"]["how"]["fatal"], f"{name}: the console shows the machine going down"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s["name"])
def test_kdump_dmesg_file_gets_the_dumps_verdict(scenario, tmp_path):
    """The kernel log of the dump, as kdump-tools' dmesg.<timestamp> / RHEL's vmcore-dmesg.txt."""
    name = scenario["name"]
    dmesg = tmp_path / "vmcore-dmesg.txt"
    dmesg.write_bytes(get_dmesg(open_program(name)))
    report = analyze_log(str(dmesg), command=[]).to_dict()
    _same_verdict(name, report["verdict"])
