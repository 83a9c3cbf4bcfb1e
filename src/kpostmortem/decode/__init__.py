"""Pure decoders: oops text, instructions, fault addresses, taints. Bytes and text in, dataclasses out."""
