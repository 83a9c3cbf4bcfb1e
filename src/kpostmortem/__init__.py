"""kpostmortem: kernel crash dump post-mortem analysis on top of drgn.

From a vmcore and its debug info to a root-cause verdict with its evidence.
"""

__version__ = "0.1.0"
