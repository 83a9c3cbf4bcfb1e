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
from . import stack as _stack
from .fault import (
    FaultExplanation,
    Suspect,
    bug_entry_at,
    exception_frame_index,
    explain_fault,
    explain_fault_at,
    kernel_mapping,
    vmap_context,
)
from .modules import loaded_modules, module_facts, module_of_address
from .stack import *  # noqa: F403 - the stack helpers' own __all__

__all__ = [
    *_stack.__all__,
    "FaultExplanation",
    "Suspect",
    "crash_analysis",
    "crash_report",
    "crash_verdict",
    "bug_entry_at",
    "exception_frame_index",
    "explain_fault",
    "explain_fault_at",
    "kernel_mapping",
    "vmap_context",
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
]


def _display_with_str() -> None:
    """drgn's REPL shows these results with ``str()`` (when they define one), like drgn's own types."""
    try:
        from drgn.cli import display_str
    except ImportError:  # drgn before 0.0.31: the REPL shows the dataclass repr
        return
    display_str(FaultExplanation)
    display_str(_stack.CanaryState)


_display_with_str()
