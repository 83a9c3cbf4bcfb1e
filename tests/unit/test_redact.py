"""Redaction on literal report data: what goes, what stays, placeholders and the summary."""

from __future__ import annotations

import json

import pytest

from kpostmortem.render.redact import Redactor, redact_report, redaction_note

OOPS_LINES = [
    "BUG: kernel NULL pointer dereference, address: 0000000000000018",
    "CPU: 1 PID: 4242 Comm: billing-agent Kdump: loaded Tainted: G           OE      6.1.0-56-cloud-amd64 #1",
    "RIP: 0010:crashpoc_null_write+0x1e/0x30 [crashpoc]",
    "RSP: 0018:ff2c2fdd803fbcb0 EFLAGS: 00000202",
    "Code: cc cc 0f 1f 44 00 00 53 48 89 fb e8 82 ff ff ff <48> c7 40 18 2a 00 00 00",
    "pci 0000:00:02.0: [1234:1111] type 00 class 0x030000",
    "Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014",
]


def report(**summary) -> dict:
    return {
        "schema_version": 1,
        "tool": {"command": ["kpostmortem", "analyze", "/home/carol/dumps/web-3.example.org/vmcore"]},
        "verdict": {
            "title": "BUG: kernel NULL pointer dereference in crashpoc_null_write [crashpoc]",
            "function": "crashpoc_null_write",
            "source": "drivers/net/ethernet/intel/e1000/e1000_main.c:143",
            "signature": "cee66fe7ef52",
            "evidence": [{"kind": "log", "text": OOPS_LINES[0], "source": "printk log", "agrees": True}],
        },
        "dump": {"path": "/var/crash/web-3/vmcore", "build_id": "3b43fad5034874490492495d552c0af6a5fab235"},
        "summary": {
            "hostname": "web-3.example.org",
            "cmdline": "root=/dev/vda1 password=hunter22 api_key=AKIAEXAMPLE123 auth=1 quiet "
                       "nfsroot=10.1.2.3:/srv/root ip6=fe80::1ff:fe23:4567:890a mac=52:54:00:12:34:56",
            **summary,
        },
        "crashed_task": {"pid": 4242, "comm": "billing-agent", "kernel_thread": False},
        "fault": {"registers": {"rax": 0, "rip": 18446744072640008398}, "trapping_instruction": "mov [rax+0x18], 0x2a"},
        "stack": {"frames": [{"function": "vfs_write", "symbol": "vfs_write+0xc7", "source": "fs/read_write.c:582"}]},
        "log": {
            "records": [{"comm": "billing-agent", "lines": OOPS_LINES, "headline": OOPS_LINES[0]}],
            "tail": [
                {"timestamp": 1.5, "text": "web-3 login: carol logged in from 192.168.7.20"},
                {"timestamp": 1.6, "text": "kworker/0:1 ran; billing-agent (pid 4242) wrote; swapper/0 idle"},
            ],
        },
    }


def test_host_name_everywhere_and_its_short_name_share_a_placeholder():
    out = redact_report(report())
    assert out["summary"]["hostname"] == "<host-1>"
    assert out["log"]["tail"][0]["text"].startswith("<host-1> login:")
    assert out["dump"]["path"] == "/var/crash/<host-1>/vmcore"
    assert "web-3" not in json.dumps(out)


def test_secrets_on_the_command_line_keep_their_key():
    cmdline = redact_report(report())["summary"]["cmdline"]
    assert "password=<secret-1>" in cmdline
    assert "api_key=<secret-2>" in cmdline
    assert "hunter22" not in cmdline and "AKIAEXAMPLE123" not in cmdline
    assert "auth=1" in cmdline, "a setting (1/0/on/off) is not a secret"
    assert "root=/dev/vda1" in cmdline


def test_ip_and_mac_addresses():
    cmdline = redact_report(report())["summary"]["cmdline"]
    assert "nfsroot=<ip-1>:/srv/root" in cmdline
    assert "ip6=<ip-2>" in cmdline
    assert "mac=<mac-1>" in cmdline


def test_users_from_home_paths_are_redacted_wherever_they_appear():
    out = redact_report(report())
    assert out["tool"]["command"][2] == "/home/<user-1>/dumps/<host-1>/vmcore"
    assert "<user-1> logged in from <ip-3>" in out["log"]["tail"][0]["text"]
    assert "carol" not in json.dumps(out)


def test_the_same_value_gets_the_same_placeholder():
    r = Redactor()
    a = r.text("from 10.0.0.5 to 10.0.0.6 and back to 10.0.0.5")
    assert a == "from <ip-1> to <ip-2> and back to <ip-1>"


def test_kernel_symbols_hex_addresses_and_source_paths_survive():
    src = report()
    out = redact_report(src)
    assert out["verdict"]["function"] == "crashpoc_null_write"
    assert out["verdict"]["source"] == src["verdict"]["source"]
    assert out["verdict"]["signature"] == src["verdict"]["signature"]
    assert out["dump"]["build_id"] == src["dump"]["build_id"]
    assert out["fault"] == src["fault"]
    assert out["stack"] == src["stack"]
    lines = out["log"]["records"][0]["lines"]
    assert lines[2:] == OOPS_LINES[2:], "RIP, RSP, Code:, PCI addresses and BIOS versions are not addresses"


def test_comms_are_kept_unless_asked():
    out = redact_report(report())
    assert out["crashed_task"]["comm"] == "billing-agent"
    out = redact_report(report(), comms=True)
    assert out["crashed_task"]["comm"] == "<comm-1>"
    assert "Comm: <comm-1> Kdump" in out["log"]["records"][0]["lines"][1]
    tail = out["log"]["tail"][1]["text"]
    assert tail == "kworker/0:1 ran; <comm-1> (pid 4242) wrote; swapper/0 idle", "kernel threads keep their names"


def test_kernel_thread_crash_keeps_its_comm():
    src = report()
    src["crashed_task"] = {"pid": 0, "comm": "swapper/1", "kernel_thread": True}
    src["log"]["records"][0]["comm"] = "swapper/1"
    out = redact_report(src, comms=True)
    assert out["crashed_task"]["comm"] == "swapper/1"


def test_a_comm_inside_a_path_or_symbol_is_not_a_comm():
    src = report()
    src["crashed_task"]["comm"] = "sh"
    src["log"]["records"][0]["comm"] = "sh"
    src["log"]["tail"].append({"timestamp": 2.0, "text": "/bin/sh -c 'echo x'; sh exited; flush_work"})
    out = redact_report(src, comms=True)
    assert out["log"]["tail"][-1]["text"] == "/bin/sh -c 'echo x'; <comm-1> exited; flush_work"


def test_secret_values_are_redacted_where_they_appear_alone():
    src = report()
    src["log"]["tail"].append({"timestamp": 2.0, "text": "init: retrying with hunter22"})
    out = redact_report(src)
    assert out["log"]["tail"][-1]["text"] == "init: retrying with <secret-1>"


@pytest.mark.parametrize("text, expected", [
    ("db_pass=s3cr3t!x", "db_pass=<secret-1>"),
    ("PASSWD='two words'", "PASSWD='<secret-1>'"),
    ("aws.secret_access_key=abcdefgh", "aws.secret_access_key=<secret-1>"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30", "Authorization: Bearer <secret-1>"),
    ("https://bob:pa55word@repo.example/x", "https://<user-1>:<secret-1>@repo.example/x"),
    ("user=dave uid=1000", "user=<user-1> uid=1000"),
    ("iommu.passthrough=1 keyboard=us monkey=yes", "iommu.passthrough=1 keyboard=us monkey=yes"),
    ("2001:db8::42 and ::1 and 127.0.0.1", "<ip-1> and ::1 and 127.0.0.1"),
    ("version 6.1.192-2, 4.354877547 s, 12:34:56", "version 6.1.192-2, 4.354877547 s, 12:34:56"),
    ("/home/root/x /root/.cache", "/home/root/x /root/.cache"),
])
def test_patterns(text, expected):
    assert Redactor().text(text) == expected


def test_summary_counts_distinct_values_and_occurrences():
    out = redact_report(report(), comms=True)
    kinds = out["redaction"]["kinds"]
    assert kinds["host"] == {"distinct": 1, "occurrences": 4}
    assert kinds["secret"]["distinct"] == 2
    assert kinds["comm"]["distinct"] == 1
    assert kinds["mac"] == {"distinct": 1, "occurrences": 1}
    assert out["redaction"]["comm"] is True
    note = redaction_note(out["redaction"])
    assert note.startswith("redacted: 1 host name (4×), 3 IP addresses (3×), 1 MAC address (1×)")
    assert "process names kept" not in note


def test_nothing_to_redact_says_so():
    src = report(hostname="(none)", cmdline="console=ttyS0")
    src["tool"]["command"] = ["kpostmortem"]
    src["dump"]["path"] = "/var/crash/vmcore"
    src["log"]["tail"] = []
    out = redact_report(src)
    assert out["summary"]["hostname"] == "(none)"
    assert redaction_note(out["redaction"]).startswith("redacted: nothing found to redact")


def test_input_is_not_modified():
    src = report()
    before = json.dumps(src)
    redact_report(src, comms=True)
    assert json.dumps(src) == before


@pytest.mark.parametrize("line, comm", [
    # 7.x: the WARNING line carries the comm, and no parsed field may have it
    ("WARNING: drivers/net/foo/foo.c:592 at foo_change_mtu+0x17/0x30 [foo], CPU#0: netcfg-agent/120",
     "netcfg-agent"),
    ("CPU: 1 UID: 0 PID: 118 Comm: netcfg-agent Kdump: loaded Tainted: G OE 7.2.12+deb14-cloud-amd64 #1",
     "netcfg-agent"),
    ("watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [netcfg-agent:99]", "netcfg-agent"),
    ("INFO: task netcfg-agent:105 blocked for more than 120 seconds.", "netcfg-agent"),
    ("netcfg-agent invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0", "netcfg-agent"),
    ("Out of memory: Killed process 812 (netcfg-agent) total-vm:2048kB", "netcfg-agent"),
])
def test_comms_in_every_log_wording_are_redacted_without_a_parsed_field(line, comm):
    src = report()
    src["crashed_task"] = {"pid": 0, "comm": "swapper/1", "kernel_thread": True}
    src["log"]["records"] = []
    src["summary"].pop("first_oops", None)
    src["log"]["tail"].append({"timestamp": 2.0, "text": line})
    text = json.dumps(redact_report(src, comms=True))
    assert comm not in text, f"{comm} leaked from: {line}"
    assert comm in json.dumps(redact_report(src)), "kept without --redact-comm"


def test_kernel_threads_named_in_log_wording_keep_their_names():
    src = report()
    src["log"]["tail"].append({"timestamp": 2.0, "text": "INFO: task kworker/0:1:12 blocked for more than 2 s"})
    out = redact_report(src, comms=True)
    assert "kworker/0:1" in out["log"]["tail"][-1]["text"]
