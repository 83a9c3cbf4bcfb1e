"""Helpers for drgn sessions: functions over a Program or Object, in drgn's own style.

``from kpostmortem.helpers import *`` in any drgn session. They return values and never print,
unless their name says so.
"""
