"""Helpers for drgn sessions: functions over a Program or Object, in drgn's own style.

``from kpostmortem.helpers import *`` in any drgn session. They return values and never print,
unless their name says so. Inside kpostmortem, import the submodules (``.fault``, ``.stack``,
``.modules``): this package also re-exports the analysis-level helpers of
:mod:`kpostmortem.session`, which run the pipeline. Those are imported on first use (PEP 562),
so that the analyzers, which import the submodules, do not pay for the interactive API.
"""

from kpostmortem.helpers import stack as _stack
from kpostmortem.helpers.fault import (
    FaultExplanation,
    Suspect,
    bug_entry_at,
    exception_frame_index,
    explain_fault,
    explain_fault_at,
    kernel_mapping,
    vmap_context,
)
from kpostmortem.helpers.locks import (
    Holder,
    WaitForGraph,
    WaitLink,
    WaitObject,
    deadlocks,
    lock_owner,
    spinlock_holders,
    wait_chain,
    wait_for_graph,
    waiting_on,
)
from kpostmortem.helpers.modules import loaded_modules, module_facts, module_of_address
from kpostmortem.helpers.stack import *  # noqa: F403 - the stack helpers' own __all__

# Re-exported from kpostmortem.session on first use (see __getattr__).
_SESSION_NAMES = (
    "crash_analysis",
    "crash_report",
    "crash_verdict",
    "fault_explanation",
    "format_fault_explanation",
    "format_stack_checks",
    "panic_stack_trace",
    "print_fault",
    "print_report",
    "print_stack_checks",
    "print_verdict",
)

__all__ = [  # noqa: PLE0604 - the session names resolve through __getattr__
    *_stack.__all__,
    "Holder",
    "WaitForGraph",
    "WaitLink",
    "WaitObject",
    "deadlocks",
    "lock_owner",
    "spinlock_holders",
    "wait_chain",
    "wait_for_graph",
    "waiting_on",
    *_SESSION_NAMES,
    "FaultExplanation",
    "Suspect",
    "bug_entry_at",
    "exception_frame_index",
    "explain_fault",
    "explain_fault_at",
    "kernel_mapping",
    "vmap_context",
    "loaded_modules",
    "module_facts",
    "module_of_address",
]


def __getattr__(name: str):
    if name in _SESSION_NAMES:
        from kpostmortem import session

        return getattr(session, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
