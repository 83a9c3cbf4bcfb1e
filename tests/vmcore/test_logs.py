"""A crash seen as a text log gets the verdict of the same crash seen as a dump.

Every corpus scenario's serial console capture (console.log, saved by make-vmcores beside the
dump) and the dump's own kernel log written out as kdump's dmesg file would be: same category,
function, module, title and signature as the dump's report.
"""

from __future__ import annotations

import pytest
from drgn.helpers.linux.printk import get_dmesg

from kpostmortem.inputs.log import open_log
from kpostmortem.logpipeline import analyze_log
from kpostmortem.logreport import log_report

from .analysis import report_of
from .corpus import dump_meta, load_manifest, open_program, scenario

SCENARIOS = [s for s in load_manifest() if not s["expect"].get("damaged")]
SAME = ("category", "function", "module", "title", "signature")


def _same_verdict(name: str, log_verdict: dict) -> None:
    """The dump's verdict; or, for a hang whose holder only the dump's memory shows, what the
    manifest's [scenario.expect.text] says the kernel's text alone tells (the waiter)."""
    dump_verdict = report_of(name)["verdict"]
    got = {k: log_verdict[k] for k in SAME}
    want = {k: dump_verdict[k] for k in SAME}
    text = scenario(name)["expect"].get("text")
    if text:
        assert got != want, f"{name}: the log now gets the dump's verdict: drop its expect.text"
        want_text = (text["category"], text["function"], text.get("module", scenario(name)["expect"]["module"]))
        assert (got["category"], got["function"], got["module"] or "") == want_text, (name, text["why"])
        # What the log could not tell is said, and costs confidence.
        assert any("log holds no memory" in m for m in log_verdict["missing"]), log_verdict["missing"]
        assert log_verdict["confidence"] < dump_verdict["confidence"]
        return
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
    # A verdict the text cannot fully tell (expect.text) says so with less confidence.
    assert report["verdict"]["confidence"] >= (0.3 if scenario["expect"].get("text") else 0.5)
    assert report["summary"]["how"]["fatal"], f"{name}: the console shows the machine going down"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s["name"])
def test_kdump_dmesg_file_gets_the_dumps_verdict(scenario, tmp_path):
    """The kernel log of the dump, as kdump-tools' dmesg.<timestamp> / RHEL's vmcore-dmesg.txt."""
    name = scenario["name"]
    dmesg = tmp_path / "vmcore-dmesg.txt"
    dmesg.write_bytes(get_dmesg(open_program(name)))
    report = analyze_log(str(dmesg), command=[]).to_dict()
    _same_verdict(name, report["verdict"])


# --------------------------------------------------------------------------- with debug info


def _debug_args(name: str) -> tuple[str, tuple[str, ...]]:
    meta = dump_meta(name)
    return meta["vmlinux"], tuple(meta["debuginfo"])


@pytest.mark.parametrize("name", ["null-write", "gpf", "timer-oops", "bug-on-612"])
def test_debug_info_gives_the_dumps_source_lines(name):
    """With the vmlinux and module files, every frame of the log gets the file:line the dump's
    unwind gives the same function, inlined frames included, and the Code: bytes are the binary's
    (or, when the log could not print them, the binary's bytes are decoded instead)."""
    vmlinux, debuginfo = _debug_args(name)
    report = analyze_log(dump_meta(name)["console_log"], vmlinux, debuginfo, command=[]).to_dict()
    dump = report_of(name)
    assert report["verdict"]["source"] == dump["verdict"]["source"]
    assert report["verdict"]["signature"] == dump["verdict"]["signature"]
    dump_lines = {(f["function"], f["source"]) for f in dump["stack"]["frames"] if f["source"]}
    log_lines = [(f["function"], f["source"]) for f in report["stack"]["frames"]]
    assert all(src for _fn, src in log_lines), log_lines
    shared = [x for x in log_lines if x[0] in {fn for fn, _ in dump_lines}]
    assert shared and all(x in dump_lines for x in shared), (shared, dump_lines)
    fault = report["fault"]
    if "code_check" in fault:
        assert fault["code_check"]["matches"], fault["code_check"]
    else:  # "Code: Unable to access opcode bytes" (timer-oops): the binary's own bytes decoded
        assert fault["code_source"] in ("vmlinux", "module file") and fault["trapping_instruction"]
    assert fault["effective_address"] == fault["fault_address"] == dump["fault"]["fault_address"]
    assert report["debug_info"]["vmlinux"] == vmlinux


def test_a_vmlinux_of_another_release_is_refused_naming_both():
    from kpostmortem.errors import DebugInfoError

    other, _ = _debug_args("null-write-612")
    log = dump_meta("null-write")["console_log"]
    release = report_of("null-write")["dump"]["release"]
    with pytest.raises(DebugInfoError) as e:
        analyze_log(log, other, (), command=[])
    assert release in str(e.value) and report_of("null-write-612")["dump"]["release"] in str(e.value)
    assert e.value.exit_code == 4


def test_code_bytes_that_differ_from_the_binary_are_flagged(tmp_path):
    """A log whose Code: line is not the binary's (wrong build, corrupted text): said, not hidden."""
    vmlinux, debuginfo = _debug_args("null-write")
    text = open(dump_meta("null-write")["console_log"], errors="replace").read()
    lines = text.splitlines()
    i = next(n for n, ln in enumerate(lines) if "Code: " in ln and "<" in ln)
    head, code = lines[i].split("Code: ", 1)
    trap = code.index("<")
    flipped = " ".join("90" for _ in code[:trap].split()) + " " + code[trap:]  # nops before the trap
    lines[i] = head + "Code: " + flipped
    bad = tmp_path / "console.log"
    bad.write_text("\n".join(lines))
    report = analyze_log(str(bad), vmlinux, debuginfo, command=[]).to_dict()
    check = report["fault"]["code_check"]
    assert not check["matches"] and "differ" in check["text"]
    assert any(not e["agrees"] and "differ" in e["text"] for e in report["verdict"]["evidence"])


def test_redaction_works_on_a_log():
    """The secrets scenario's console log, redacted: none of the planted values is left."""
    import json

    from kpostmortem.render.redact import redact_report

    sc = next(s for s in SCENARIOS if s["name"] == "secrets")
    report = analyze_log(dump_meta("secrets")["console_log"], command=[]).to_dict()
    text = json.dumps(report)
    planted = [arg.split("=", 1)[1] for arg in sc["boot_args"].split()] + [sc["trigger_comm"]]
    assert all(p in text for p in planted), "the log shows what was planted"
    redacted = json.dumps(redact_report(report, comms=True))
    left = [p for p in planted if p in redacted]
    assert not left, left
