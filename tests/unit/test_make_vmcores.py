"""scripts/make-vmcores without QEMU: the manifest's groups, guest memory and threads keys, what a
run selects by default, and how the guest is sized from them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from lib_vmcores import guest, main  # noqa: E402

from tests.vmcore import corpus  # noqa: E402

SCENARIOS = main.load_manifest()


def _names(sel: list[dict]) -> set[str]:
    return {s["name"] for s in sel}


def _groups(sel: list[dict]) -> set[str]:
    return {s["group"] for s in sel}


@pytest.fixture(autouse=True)
def _whole_corpus(monkeypatch):
    """The tests' view of the whole corpus, as in `make test` (`make test-quick` sets KPM_KERNELS)."""
    monkeypatch.delenv("KPM_KERNELS", raising=False)


def test_both_groups_are_in_the_manifest_and_agree_with_the_tests_view():
    assert {"corpus", "scale"} <= _groups(SCENARIOS) <= set(main.GROUPS)
    assert main.scenario_groups() == corpus.groups()
    assert _names(s for s in SCENARIOS if s["group"] == "corpus") == set(corpus.names())
    assert set(corpus.names(group="scale")) == {n for n, g in corpus.groups().items() if g == "scale"}
    # the defaults are the same on both sides
    for key in ("memory", "threads", "group", "params"):
        assert main.DEFAULTS[key] == corpus.DEFAULTS[key], key


def test_a_plain_run_makes_only_the_corpus_group():
    sel = main.select(SCENARIOS, only=[])
    assert _groups(sel) == {"corpus"} and _names(sel) == set(corpus.names())


def test_scale_is_made_on_request_and_listed_by_default():
    scale = main.select(SCENARIOS, only=[], group="scale")
    assert _groups(scale) == {"scale"} and {"null-write-4g", "null-write-4g-full", "threads-10k"} <= _names(scale)
    assert _names(main.select(SCENARIOS, only=["null-write-4g"])) == {"null-write-4g"}
    assert _names(main.select(SCENARIOS, only=[], listing=True)) == _names(SCENARIOS)
    assert _names(main.select(SCENARIOS, only=[], group="all")) == _names(SCENARIOS)
    assert _groups(main.select(SCENARIOS, only=[], group="corpus", listing=True)) == {"corpus"}
    assert {s["kernel"] for s in main.select(SCENARIOS, only=[], group="all", kernel="6.12")} == {"6.12"}


def test_guest_size_follows_memory():
    small, big = {"memory": 1024}, {"memory": 4096}
    assert guest.guest_memory({}) == 1024
    assert guest.disk_bytes(small) == 2 << 30
    # an unfiltered ELF dump of the whole guest must fit on the sparse capture disk
    assert guest.disk_bytes(big) > 4096 << 20
    assert guest.guest_timeout(small, "tcg") == guest.TIMEOUT_TCG
    assert guest.guest_timeout(big, "tcg") == 4 * guest.TIMEOUT_TCG
    assert guest.guest_timeout({"memory": 768}, "kvm") == guest.TIMEOUT_KVM


def test_threads_reach_the_guest_and_change_the_dump_inputs(tmp_path):
    sc = next(s for s in SCENARIOS if s["name"] == "threads-2k")
    base = tmp_path / "base.cpio"
    base.write_bytes(b"")
    env = guest.scenario_initrd(base, sc, tmp_path / "initrd.cpio").read_bytes()
    assert b"KPM_THREADS=2000\n" in env
    plain = dict(sc, threads=0)
    assert main.inputs_hash(sc, "x") != main.inputs_hash(plain, "x")
    assert main.inputs_hash(dict(sc, memory=2048), "x") != main.inputs_hash(sc, "x")
    # description, console and group never remake a dump
    assert main.inputs_hash(dict(sc, group="scale", description="?"), "x") == main.inputs_hash(sc, "x")


@pytest.mark.parametrize("bad, why", [
    ({"group": "huge"}, "group must be"),
    ({"memory": 256}, "memory must be"),
    ({"memory": "4G"}, "memory must be"),
    ({"threads": -1}, "threads must be"),
    ({"threads": 10, "load_module": False}, "threads needs load_module"),
])
def test_bad_keys_are_refused(tmp_path, bad, why):
    lines = ['[[scenario]]', 'name = "x"', 'kernel = "6.1"', 'trigger = "null_write"', 'description = "x"']
    for k, v in bad.items():
        lines.append(f"{k} = {v!r}".replace("'", '"').replace("False", "false"))
    lines += ["[scenario.expect]", 'category = "unknown"']
    path = tmp_path / "manifest.toml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit, match=why):
        main.load_manifest(path)


# ------------------------------------------------------------------ kernels.toml


def test_every_manifest_series_has_a_preferred_kernel():
    from lib_vmcores import kernels

    for series in {s["kernel"] for s in SCENARIOS}:
        spec = kernels.SERIES[series]
        assert spec["release"].endswith("-" + spec["flavour"]), spec
        # "arm64-6.1": a foreign architecture's series is named ARCH-VERSION
        version = series.removeprefix(spec["arch"] + "-") if spec.get("arch") else series
        assert spec["release"].startswith(version + "."), spec
        assert spec["version"], spec


def test_a_malformed_kernels_toml_names_the_series(tmp_path):
    from lib_vmcores import kernels

    f = tmp_path / "kernels.toml"
    f.write_text('[series."6.1"]\nflavour = "cloud-amd64"\n')
    with pytest.raises(SystemExit, match=r"series 6.1 lacks 'metapackage'"):
        kernels.load_series(f)
    f.write_text('[series."6.1"]\nmetapackage = "m"\nflavour = "f"\nrelease = "6.1.0-1-f"\n')
    with pytest.raises(SystemExit, match="both release and version"):
        kernels.load_series(f)


@pytest.mark.parametrize("word,words", [
    ("6.1", "expected SERIES=VERSION"),
    ("6.1=", "expected SERIES=VERSION"),
    ("4.19=4.19.0-27", "unknown series 4.19"),
])
def test_kernel_version_overrides_are_checked_before_any_download(word, words):
    from lib_vmcores import kernels

    with pytest.raises(kernels.KernelError, match=words):
        kernels.set_kernel_versions([word])


def test_params_must_be_plain_crashpoc_parameters(tmp_path):
    good = main.MANIFEST.read_text()
    bad = good + '\n[[scenario]]\nname = "x"\nkernel = "6.1"\ndescription = "d"\ntrigger = "t"\n' \
                 'params = {park_d = "2; reboot"}\n[scenario.expect]\ncategory = "c"\n'
    f = tmp_path / "manifest.toml"
    f.write_text(bad)
    with pytest.raises(SystemExit, match="params must map crashpoc parameter names"):
        main.load_manifest(f)
