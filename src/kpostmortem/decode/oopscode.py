"""The oops's "Code:" bytes explained without a dump: what ``scripts/decodecode`` shows, and more.

Decode the bytes around the "<..>" marker with capstone, take the trapping instruction's memory
operand, recompute its address from the register dump and compare it with CR2 / the reported
fault address, and name the register that held the bad pointer. The result has the keys of
``helpers.fault.FaultExplanation.to_dict()`` so the verdict engine and renderers take it as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

from kpostmortem.decode.disasm import Instruction, decode_window, effective_address, is_ud2, register_family
from kpostmortem.decode.faultclass import classify_address, decode_pf_error_code, recognize_poison

__all__ = ["explain_code_bytes", "pointer_load"]

_U64 = (1 << 64) - 1
# With no RIP value in the log, the bytes are decoded at a made-up kernel address whose low
# bits are the RIP's offset into its function (the text shows offsets, not this address).
_NOMINAL_BASE = 0xFFFFFFFF81000000


def _symbol(function: str | None, func_start: int | None, address: int) -> str:
    if function is None or func_start is None:
        return f"0x{address:x}"
    delta = (address - func_start) & _U64
    if delta >= 1 << 63:
        return f"{function}-0x{(1 << 64) - delta:x}"
    return f"{function}+0x{delta:x}"


def _insn_dict(insn: Instruction, trap: bool, function: str | None, func_start: int | None,
               shown_pc: bool) -> dict:
    text = f"{insn.mnemonic} {insn.op_str}".strip()
    target = None
    if insn.branch_target is not None and not shown_pc:
        # The address is made up (no RIP value in the log): name the target by its distance
        # from the function's start instead, as the trace names frames.
        target = _symbol(function, func_start, insn.branch_target)
        text = text.replace(f"0x{insn.branch_target:x}", target)
    return {
        "address": insn.address if shown_pc else None,
        "symbol": _symbol(function, func_start, insn.address),
        "bytes": insn.bytes.hex(),
        "text": text,
        "target": target,
        "source": None,
        "trap": trap,
    }


def pointer_load(insns: list[Instruction], trap: int, register: str) -> tuple[int, Instruction] | None:
    """The last instruction before ``trap`` in the decoded window that wrote ``register``
    (a 64-bit family name): (its index, the instruction), or None when none did."""
    for i in range(trap - 1, -1, -1):
        insn = insns[i]
        ops = [o.strip() for o in insn.op_str.split(",")]
        if not ops or not ops[0] or insn.mnemonic in ("cmp", "test", "push") or insn.mnemonic.startswith("j"):
            continue
        if insn.is_call:
            if register in ("rax", "rdx", "rcx", "rsi", "rdi", "r8", "r9", "r10", "r11"):
                return i, insn  # a call clobbers the caller-saved registers
            continue
        if "[" not in ops[0] and register_family(ops[0]) == register:
            return i, insn
    return None


def explain_code_bytes(
    code: bytes | None,
    trap_offset: int | None,
    *,
    function: str | None,
    offset: int | None,
    registers: Mapping[str, int],
    size: int | None = None,
    pc: int | None = None,
    fault_address: int | None = None,
    error_code: int | None = None,
    arch: str = "x86_64",
    va_bits: int = 48,
) -> dict:
    """Explain a fault from its log: ``code`` and the index of its trapping byte, the RIP as
    ``function+offset/size`` (and its value ``pc`` when printed), the register dump (lower-case
    names: "rax"…"r15", "rsp", "gs_base").

    Never raises on odd input: what cannot be worked out is left None and said in ``problems``.
    """
    regs = {k: v for k, v in registers.items()}
    ex: dict = {
        "frame_index": 0, "pc": pc, "function": function, "source": None, "registers": regs,
        "instructions": [], "trap_index": None, "trapping_instruction": None, "access": None,
        "operand": None, "base_register": None, "index_register": None, "displacement": None,
        "effective_address": None, "fault_address": fault_address,
        "fault_address_source": "oops message (CR2)" if fault_address is not None else None,
        "address_matches": None, "address_class": None, "poison": None, "bad_register": None,
        "bad_register_value": None, "error_code": None, "suspects": [], "mapping": None,
        "identity": None, "va_bits": va_bits, "origin": None, "bug": None, "invalid_pc": False,
        "caller": None, "from_log": True, "is_ud2": False, "code_source": "log", "problems": [],
    }
    if error_code is not None:
        decoded = decode_pf_error_code(error_code)
        ex["error_code"] = asdict(decoded) | {"text": decoded.describe()}
    if function is None and pc is not None and pc < 1 << 47:
        # RIP is not kernel text (0, a user address, garbage): a call through a bad pointer.
        ex["invalid_pc"] = True
        ex["address_class"] = asdict(classify_address(pc, va_bits=va_bits))
        return ex
    if code is None or trap_offset is None:
        ex["problems"].append("the log has no \"Code:\" bytes with the trapping byte marked")
        return ex
    ex["log_code"] = {"bytes": code.hex(), "trap_offset": trap_offset}
    if arch != "x86_64":
        ex["problems"].append(f"\"Code:\" bytes of {arch} are not decoded yet")
        return ex
    base = pc if pc is not None else _NOMINAL_BASE + (offset or 0)
    start = (base - trap_offset) & _U64
    func_start = (base - offset) & _U64 if offset is not None else None
    try:
        insns, trap = decode_window(code, start, base, before=6, after=4)
    except ValueError as e:
        ex["problems"].append(f"\"Code:\" bytes not decoded: {e}")
        return ex
    if trap is not None and func_start is not None and size:
        # Keep the window inside the trapping function, as a reader expects.
        keep = [i for i, insn in enumerate(insns) if (insn.address - func_start) & _U64 < size or i == trap]
        trap = keep.index(trap)
        insns = [insns[i] for i in keep]
    shown_pc = pc is not None
    ex["instructions"] = [_insn_dict(insn, i == trap, function, func_start, shown_pc) for i, insn in enumerate(insns)]
    ex["trap_index"] = trap
    if trap is None:
        ex["problems"].append("the trapping byte of \"Code:\" does not start a whole instruction")
        return ex
    insn = insns[trap]
    ex["trapping_instruction"] = f"{insn.mnemonic} {insn.op_str}".strip()
    ex["is_ud2"] = is_ud2(insn)
    mem = insn.mem
    if mem is None or mem.implicit:
        return ex
    ex["access"] = mem.access
    ex["base_register"] = mem.base
    ex["index_register"] = mem.index
    ex["displacement"] = mem.disp
    ops = [o.strip() for o in insn.op_str.split(",")]
    ex["operand"] = next((o for o in ops if "[" in o), None)
    rip_relative = mem.base is not None and register_family(mem.base) == "rip"
    if not rip_relative or shown_pc:
        ex["effective_address"] = effective_address(mem, regs, next_pc=insn.address + insn.size)
    ea = ex["effective_address"]
    if fault_address is not None and ea is not None:
        ex["address_matches"] = fault_address == ea
    target = fault_address if fault_address is not None else ea
    if target is not None:
        ex["address_class"] = asdict(classify_address(target, va_bits=va_bits))
    for reg in (mem.base, mem.index):
        if reg and register_family(reg) != "rip":
            family = register_family(reg)
            value = regs.get(family)
            if value is None:
                continue
            ex["bad_register"] = family
            ex["bad_register_value"] = value
            ex["poison"] = recognize_poison(value)
            break
    if ex["bad_register"]:
        load = pointer_load(insns, trap, ex["bad_register"])
        if load is not None:
            i, src = load
            what = "the return value of" if src.is_call else "loaded by"
            where = _symbol(function, func_start, src.address)
            text = f"{ex['bad_register']} was {what} `{src.mnemonic} {src.op_str}` at {where}"
            ex["origin"] = {"index": i, "symbol": where, "instruction": f"{src.mnemonic} {src.op_str}",
                            "variable": None, "member": None, "text": text}
    return ex
