"""Front ends: the click CLI, the drgn shell and plugin commands, fleet batch runs."""
