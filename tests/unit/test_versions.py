"""Version ordering (decode/versions.py) on real Debian and RPM kernel version strings, release ranges,
and the comparable versions of a running kernel read from uname -r and -v."""

import pytest

from kpostmortem.decode.versions import (
    VersionError,
    VersionRange,
    compare,
    deb_compare,
    kernel_versions,
    rpm_compare,
    rpmvercmp,
)

# (smaller, larger): each pair checked with `dpkg --compare-versions A lt B` on Debian 12.
DEB_ORDER = [
    ("6.1.0-57", "6.1.0-60"),               # Debian's kernel ABI in the release name
    ("5.10.0-9", "5.10.0-30"),              # numbers, not strings: "30" > "9"
    ("6.1.0-60", "6.1.192-3"),              # the package version of the same kernel series
    ("6.1.192-3", "6.1.192-3+deb12u1"),     # a stable update's + suffix sorts after
    ("6.1.192-3~bpo11+1", "6.1.192-3"),     # a backport's ~ suffix sorts before
    ("6.13~rc3-1~exp1", "6.13-1"),          # a release candidate sorts before the release
    ("6.12.117-1~deb12u1", "6.12.117-1"),
    ("6.12.117", "6.12.117+deb12"),
    ("6.1", "6.1.0-57"),
    ("6.1.0-57", "6.13"),
    ("6.1.0-57~", "6.1.0-57"),
    ("6.1", "1:4.19"),                      # an epoch beats everything after it
]


@pytest.mark.parametrize("small,large", DEB_ORDER)
def test_debian_order(small, large):
    assert deb_compare(small, large) == -1
    assert deb_compare(large, small) == 1
    assert deb_compare(small, small) == 0


def test_debian_missing_revision_equals_zero():
    assert deb_compare("1.0", "1.0-0") == 0


@pytest.mark.parametrize("bad", ["", "abc", "6.1-", "x:6.1", "6.1 0", "6.1/2"])
def test_debian_rejects_malformed(bad):
    with pytest.raises(VersionError):
        deb_compare(bad, "6.1")


RPM_ORDER = [
    ("5.14.0-427.13.1.el9_4", "5.14.0-427.18.1.el9_4"),   # RHEL 9.4 z-stream updates
    ("5.14.0-362.24.1.el9_3", "5.14.0-427.13.1.el9_4"),
    ("5.14.0-70.el9", "5.14.0-427.13.1.el9_4"),
    ("4.18.0-553.el8_10", "4.18.0-553.5.1.el8_10"),       # digits beat letters
    ("6.8.5-301.fc40", "6.8.10-300.fc40"),
    ("6.9.0-0.rc1.fc41", "6.9.0-1.fc41"),
    ("1.0~rc1", "1.0"),
    ("1.0", "1.0^git1"),
    ("5.14.0-427.el9", "1:4.18.0-80.el8"),
]


@pytest.mark.parametrize("small,large", RPM_ORDER)
def test_rpm_order(small, large):
    assert rpm_compare(small, large) == -1
    assert rpm_compare(large, small) == 1


# From rpm's own test suite (tests/rpmvercmp.at): (a, b, rpmvercmp(a, b)).
RPMVERCMP = [
    ("1.0", "1.0", 0), ("2.0.1a", "2.0.1", 1), ("5.5p1", "5.5p10", -1), ("10xyz", "10.1xyz", -1),
    ("xyz.4", "8", -1), ("2", "xyz.4", 1), ("6.0.rc1", "6.0", 1), ("10b2", "10a1", 1),
    ("1.0a", "1.0aa", -1), ("10.0001", "10.1", 0), ("4.999.9", "5.0", -1), ("2_0", "2.0", 0),
    ("a+", "a_", 0), ("1.0~rc1", "1.0~rc2", -1), ("1.0~rc1~git123", "1.0~rc1", -1), ("1.0^", "1.0", 1),
    ("1.0^git1", "1.01", -1), ("1.0^20160101", "1.0.1", -1), ("1.0~rc1^git1", "1.0~rc1", 1),
    ("1.0^git1", "1.0^git1~pre", 1),
]


@pytest.mark.parametrize("a,b,expected", RPMVERCMP)
def test_rpmvercmp(a, b, expected):
    assert rpmvercmp(a, b) == expected


def test_rpm_release_compared_only_when_both_have_one():
    assert rpm_compare("5.14.0", "5.14.0-427.el9") == 0


def test_compare_scheme():
    # The orderings differ on separators: dpkg weighs "+" below ".", rpm only splits on them.
    assert compare("6.1+1", "6.1.1", "deb") == -1
    assert compare("6.1+1", "6.1.1", "rpm") == 0
    assert compare("6.1.0-57", "6.1.0-60", "deb") == compare("6.1.0-57", "6.1.0-60", "rpm") == -1
    assert compare("1.0~rc1", "1.0", "deb") == compare("1.0~rc1", "1.0", "rpm") == -1
    with pytest.raises(VersionError):
        compare("1", "2", "apk")


def test_range_all_constraints():
    r = VersionRange.parse(">=6.1, <6.13")
    assert r.contains("6.1.0-57")
    assert r.contains("6.12.117+deb12")
    assert not r.contains("6.13")
    assert not r.contains("6.13.2")
    assert not r.contains("5.10.0-30")
    assert r.contains("6.13~rc3")                 # a release candidate of 6.13 is before 6.13


def test_range_bare_version_is_a_series():
    r = VersionRange.parse("6.1")
    assert r.contains("6.1") and r.contains("6.1.0-57") and r.contains("6.1.192-3")
    assert not r.contains("6.12.117") and not r.contains("6.10")


@pytest.mark.parametrize("bad", ["", ">=", ">=6.1,", "~>6.1", ">=six", "6.1 6.2"])
def test_range_rejects_malformed(bad):
    with pytest.raises(VersionError):
        VersionRange.parse(bad)


DEBIAN_61 = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)"


def test_kernel_versions_debian():
    kv = kernel_versions("6.1.0-57-cloud-amd64", DEBIAN_61)
    assert (kv.release, kv.package, kv.scheme) == ("6.1.0-57", "6.1.192-3", "deb")
    # A bound written like the release is compared with the release, else with the package.
    assert kv.for_bound("6.1.0-60") == "6.1.0-57"
    assert kv.for_bound("6.1.190-1") == "6.1.192-3"
    assert kv.for_bound("6.13") == "6.1.192-3"
    assert kv.describe("6.1.192-3") == "6.1.192-3 (6.1.0-57-cloud-amd64)"


def test_kernel_versions_debian_backport():
    kv = kernel_versions("6.12.117+deb12-cloud-amd64",
                         "#1 SMP PREEMPT_DYNAMIC Debian 6.12.117-1~deb12u1 (2026-11-14)")
    assert (kv.release, kv.package) == ("6.12.117+deb12", "6.12.117-1~deb12u1")
    assert VersionRange.parse(">=6.1, <6.13").contains(kv)
    assert not VersionRange.parse("<6.12").contains(kv)


def test_kernel_versions_rhel_and_ubuntu():
    rhel = kernel_versions("5.14.0-427.13.1.el9_4.x86_64", "#1 SMP PREEMPT_DYNAMIC Wed Apr 10 10:29:16 EDT 2024")
    assert (rhel.release, rhel.package, rhel.scheme) == ("5.14.0-427.13.1.el9_4", None, "rpm")
    assert rpm_compare(rhel.for_bound("5.14.0-427.18.1.el9_4"), "5.14.0-427.18.1.el9_4") == -1
    ubuntu = kernel_versions("5.15.0-91-generic", "#101-Ubuntu SMP Tue Nov 14 13:30:08 UTC 2023")
    assert (ubuntu.release, ubuntu.package, ubuntu.scheme) == ("5.15.0-91", "5.15.0-91.101", "deb")
    rc = kernel_versions("6.13.0-rc3")
    assert rc.release == "6.13.0-rc3" and rc.package is None
