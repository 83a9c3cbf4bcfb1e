"""Inputs: sniff a file and open it (a vmcore through drgn, its ELF notes, the no-DWARF mode)."""
