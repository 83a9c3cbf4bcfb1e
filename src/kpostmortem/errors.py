"""Errors that end a run, each with its documented exit code.

Everything else that goes wrong during an analysis is data in the report.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the ``kpostmortem`` command (documented in README and ``--help``)."""

    VERDICT = 0
    """A verdict was reached with confidence >= 0.5."""
    NO_VERDICT = 1
    """The analysis ran, but no confident verdict (category unknown or low confidence)."""
    USAGE = 2
    """Bad command line (click's own code for usage errors)."""
    DUMP = 3
    """The dump cannot be opened or is not a kernel crash dump."""
    DEBUG_INFO = 4
    """Debug info is missing, unreadable or does not match the dump."""
    INTERNAL = 5
    """A bug in kpostmortem itself; the message says where."""


class KpmError(Exception):
    """An error that stops the run with one line and an exit code."""

    exit_code = ExitCode.INTERNAL

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message}" + (f" ({self.hint})" if self.hint else "")


class DumpError(KpmError):
    """The dump file cannot be opened as a kernel crash dump."""

    exit_code = ExitCode.DUMP


class DebugInfoError(KpmError):
    """Debug info is missing or does not match the dump."""

    exit_code = ExitCode.DEBUG_INFO


class NoCrashReport(KpmError):
    """The input is readable but holds no kernel crash report (a log of a healthy boot)."""

    exit_code = ExitCode.NO_VERDICT
