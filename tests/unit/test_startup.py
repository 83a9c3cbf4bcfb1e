"""What a `kpostmortem analyze` process loads before it reaches the dump (issue 9)."""

from __future__ import annotations

import json
import subprocess
import sys

from kpostmortem.inputs.dump import SESSION_PLUGINS, skip_session_plugins


def test_session_plugins_are_added_to_what_the_user_disabled():
    env = {"DRGN_DISABLE_PLUGINS": "site_finder"}
    skip_session_plugins(env)
    assert env["DRGN_DISABLE_PLUGINS"].split(",") == ["site_finder", *SESSION_PLUGINS]
    skip_session_plugins(env)  # idempotent
    assert env["DRGN_DISABLE_PLUGINS"].split(",") == ["site_finder", *SESSION_PLUGINS]


def test_all_plugins_disabled_stays_so():
    env = {"DRGN_DISABLE_PLUGINS": "*"}
    skip_session_plugins(env)
    assert env == {"DRGN_DISABLE_PLUGINS": "*"}


def test_unset_gets_the_session_plugins():
    env: dict[str, str] = {}
    skip_session_plugins(env)
    assert env["DRGN_DISABLE_PLUGINS"] == ",".join(SESSION_PLUGINS)


def test_the_pipeline_imports_no_interactive_api_nor_disassembler():
    """capstone, pyelftools and the drgn-session API are imported where used, not by the pipeline."""
    code = ("import sys, json, kpostmortem.pipeline, kpostmortem.frontends.cli; "
            "print(json.dumps(sorted(m for m in ('capstone', 'elftools', 'kpostmortem.session', "
            "'kpostmortem.render', 'kpostmortem.render.redact') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_helpers_package_still_exports_the_session_helpers():
    code = "from kpostmortem.helpers import *; print(crash_verdict.__module__, print_stack_checks.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["kpostmortem.session", "kpostmortem.session"]


def test_lazy_session_names_are_the_session_api():
    """helpers/__init__ lists the session names it re-exports without importing session.py:
    the list must follow session's own __all__ (dump_of_program stays session-only)."""
    import kpostmortem.helpers as helpers
    from kpostmortem import session

    assert set(helpers._SESSION_NAMES) == set(session.__all__) - {"dump_of_program"}
