"""drgn plugin: registers kpostmortem's commands when drgn opens a Linux kernel.

Loaded through the ``drgn.plugins`` entry point.
"""
