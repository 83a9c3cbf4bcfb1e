"""Helpers for drgn sessions: functions over a Program or Object, in drgn's own style.

``from kpostmortem.helpers import *`` in any drgn session. They return values and never print,
unless their name says so. Inside kpostmortem, import the submodules (``.fault``, ``.stack``,
``.modules``): this package also re-exports the analysis-level helpers of
:mod:`kpostmortem.session`, which run the pipeline.
"""

from ..session import (
    crash_analysis,
    crash_report,
    crash_verdict,
    fault_explanation,
    format_fault_explanation,
    format_stack_checks,
    panic_stack_trace,
    print_fault,
    print_report,
    print_stack_checks,
    print_verdict,
)
from .fault import FaultExplanation, Suspect, exception_frame_index, explain_fault
from .modules import loaded_modules, module_facts, module_of_address
from .stack import STACK_END_MAGIC, CanaryState, damaged_canaries, stack_end_canary, thread_size

__all__ = [
    "STACK_END_MAGIC",
    "CanaryState",
    "FaultExplanation",
    "Suspect",
    "crash_analysis",
    "crash_report",
    "crash_verdict",
    "damaged_canaries",
    "exception_frame_index",
    "explain_fault",
    "fault_explanation",
    "format_fault_explanation",
    "format_stack_checks",
    "loaded_modules",
    "module_facts",
    "module_of_address",
    "panic_stack_trace",
    "print_fault",
    "print_report",
    "print_stack_checks",
    "print_verdict",
    "stack_end_canary",
    "thread_size",
]


def _display_with_str() -> None:
    """drgn's REPL shows these results with ``str()`` (when they define one), like drgn's own types."""
    try:
        from drgn.cli import display_str
    except ImportError:  # drgn before 0.0.31: the REPL shows the dataclass repr
        return
    display_str(FaultExplanation)
    display_str(CanaryState)


_display_with_str()
