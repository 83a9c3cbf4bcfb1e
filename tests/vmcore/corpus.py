"""Where the real vmcore corpus lives, and what the manifest says about it.

Stdlib only (pytest and drgn are imported lazily by the functions that need
them), so tests anywhere in the project can `from tests.vmcore import corpus`
or `from vmcore import corpus`.  The dumps themselves are made by
`scripts/make-vmcores`; see docs/corpus.md.

Scenarios come in groups: "corpus" (the default; the dumps the tests need, which CI
makes) and "scale" (big inputs of the scaling benchmark, made only on request).
Everything here lists the corpus group unless asked for another: a scale dump is
never needed by a test, so a missing one is neither a failure nor a skip.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "fixtures" / "vmcores" / "manifest.toml"
MAKE_VMCORES = "scripts/make-vmcores"

# Defaults of the optional manifest keys (same as scripts/lib_vmcores/main.py).
DEFAULTS = {
    "format": "kdump",
    "dump_level": 31,
    "boot_args": "",
    "sysctls": {},
    "load_module": True,
    "console": [],
    "dmesg": [],
    "followup": "",
    "preload": [],
    "panic_on_oops": True,
    "hostname": "",
    "trigger_comm": "",
    "memory": 1024,       # guest RAM, MiB
    "threads": 0,         # sleeping kthreads crashpoc starts before the trigger
    "group": "corpus",
    "params": {},         # crashpoc parameters written before the trigger (park_d: D kthreads)
}
CORPUS = "corpus"
SCALE = "scale"
ARM64 = "arm64"     # the arm64 series while it is brought up (made on request, like scale)
GROUPS = (CORPUS, SCALE, ARM64)


def kernel_series() -> dict[str, dict]:
    """The kernel series of fixtures/vmcores/kernels.toml: {name: {metapackage, arch…}}."""
    with open(REPO / "fixtures" / "vmcores" / "kernels.toml", "rb") as f:
        return tomllib.load(f)["series"]


def cache_root() -> Path:
    """$KPM_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/kpostmortem."""
    if os.environ.get("KPM_CACHE"):
        return Path(os.environ["KPM_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "kpostmortem"


def load_manifest(group: str | None = CORPUS) -> list[dict]:
    """The [[scenario]] tables of fixtures/vmcores/manifest.toml, defaults filled in.

    Only those of `group` ("corpus" by default, "scale"); None gives every group.
    Each dict carries its "group".
    """
    with open(MANIFEST, "rb") as f:
        data = tomllib.load(f)
    out = []
    series = quick_kernels() if group == CORPUS else None
    for raw in data.get("scenario", []):
        sc = {**DEFAULTS, **raw}
        sc["expect"] = {"module": "", "stack": [], **raw.get("expect", {})}
        if (group is None or sc["group"] == group) and (series is None or sc["kernel"] in series):
            out.append(sc)
    return out


def quick_kernels() -> set[str] | None:
    """$KPM_KERNELS ("6.1,6.12"): `make test-quick` reads the corpus of those series only, the
    dumps it built. Unset (`make test`, CI): every series."""
    value = os.environ.get("KPM_KERNELS", "").strip()
    return {k.strip() for k in value.split(",") if k.strip()} or None


def groups() -> dict[str, str]:
    """{scenario name: group} for every scenario of the manifest."""
    return {s["name"]: s["group"] for s in load_manifest(group=None)}


def scenario(name: str) -> dict:
    """A scenario of any group, by name."""
    for sc in load_manifest(group=None):
        if sc["name"] == name:
            return sc
    raise KeyError(f"no scenario {name!r} in {MANIFEST}")


def names(kernel: str | None = None, group: str | None = CORPUS) -> list[str]:
    """Scenario names of a group (default "corpus"; None: all), optionally of one kernel series."""
    return [s["name"] for s in load_manifest(group) if kernel is None or s["kernel"] == kernel]


def dump_dir(name: str) -> Path:
    return cache_root() / "vmcores" / name


def build_command(name: str) -> str:
    return f"{MAKE_VMCORES} --only {name}"


def _fail(msg: str):
    try:
        import pytest
    except ImportError:  # pragma: no cover - outside pytest
        raise AssertionError(msg) from None
    pytest.fail(msg, pytrace=False)


def dump_meta(name: str) -> dict:
    """meta.json of a scenario's dump; fails the test (never skips) when missing."""
    d = dump_dir(name)
    meta_f, core = d / "meta.json", d / "vmcore"
    if not meta_f.exists() or not core.exists():
        _fail(f"vmcore for scenario {name!r} is missing in {d}; "
              f"build it with: {build_command(name)}  (or the whole corpus: {MAKE_VMCORES})")
    meta = json.loads(meta_f.read_text())
    meta["path"] = str(core)
    meta["console_log"] = str(d / "console.log")
    return meta


def console_log(name: str) -> str:
    dump_meta(name)
    return (dump_dir(name) / "console.log").read_text(errors="replace")


def debug_paths(meta: dict) -> list[str]:
    """Files to give drgn's load_debug_info(): vmlinux and our module's .ko."""
    paths = [meta["vmlinux"]]
    if meta.get("module_ko"):
        paths.append(meta["module_ko"])
    return paths


def open_program(name: str, debug_info: bool = True):
    """A drgn Program on the scenario's dump, with its debug info loaded."""
    import drgn

    meta = dump_meta(name)
    prog = drgn.Program()
    prog.set_core_dump(meta["path"])
    if debug_info:
        prog.load_debug_info(debug_paths(meta))
    return prog


def base_function_name(name: str | None) -> str | None:
    """foo.cold / foo.constprop.0 / foo.isra.0 / foo.part.0 -> foo."""
    return name.split(".", 1)[0] if name else name
