"""Shared pytest options: --regen-golden rewrites the golden normalised reports.

Every test starts with drgn's plugin switch as the session began: `kpostmortem analyze`
run in-process (click's CliRunner) turns drgn's command plugins off in os.environ for the
process and its children, which would leave a later test's plain `drgn` without them.
"""

import os

import pytest
from hypothesis import settings

# Property tests check what code does, never how fast: a CI host busy with QEMU guests (or
# any loaded machine) must not fail one on hypothesis's default 200 ms deadline per example.
settings.register_profile("kpostmortem", deadline=None)
settings.load_profile("kpostmortem")


def pytest_addoption(parser):
    parser.addoption(
        "--regen-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/*.json from the current corpus instead of comparing",
    )


@pytest.fixture(autouse=True)
def _drgn_plugins_as_the_session_began():
    before = os.environ.get("DRGN_DISABLE_PLUGINS")
    yield
    if before is None:
        os.environ.pop("DRGN_DISABLE_PLUGINS", None)
    else:
        os.environ["DRGN_DISABLE_PLUGINS"] = before
