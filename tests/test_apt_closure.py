"""The APT closure: what apt would install, across the suites of one channel, and what it warns about."""

from __future__ import annotations

from downloader.apt.closure import ClosureOptions, Universe, resolve
from downloader.apt.packages import PackageRecord

SHA = "0" * 64


def rec(name: str, version: str = "1.0", suite: str = "bookworm", arch: str = "amd64", *, depends: str = "",
        pre_depends: str = "", recommends: str = "", provides: str = "", multi_arch: str = "no",
        essential: bool = False, priority: str = "optional") -> PackageRecord:
    return PackageRecord(name, version, arch, f"pool/main/{name[0]}/{name}/{name}_{version}_{arch}.deb", 1, SHA,
                         multi_arch, depends, pre_depends, recommends, provides, essential, priority, "misc", "",
                         f"Package: {name}", suite, "main")


def universe(*records: PackageRecord, suites: tuple[str, ...] = ("bookworm", "bookworm-updates")) -> Universe:
    return Universe.build([[r for r in records if r.suite == s] for s in suites], "amd64",
                          f"{', '.join(suites)} main")


def chosen(u: Universe, *packages: str, **options: object) -> tuple[set[tuple[str, str]], list[str]]:
    result = resolve(u, ClosureOptions(tuple(packages), **options))  # type: ignore[arg-type]
    return {(r.name, r.version) for r in result.chosen}, result.warnings


def test_depends_and_pre_depends_are_followed_transitively() -> None:
    u = universe(rec("hello", depends="libc6 (>= 2.34)", pre_depends="dpkg-ish"), rec("libc6", "2.36", depends="gcc-base"),
                 rec("gcc-base"), rec("dpkg-ish"), rec("unrelated"))
    assert chosen(u, "hello") == ({("hello", "1.0"), ("libc6", "2.36"), ("gcc-base", "1.0"), ("dpkg-ish", "1.0")}, [])


def test_recommends_only_on_request_and_never_a_warning() -> None:
    u = universe(rec("hello", recommends="hello-doc, nosuch"), rec("hello-doc"))
    assert chosen(u, "hello") == ({("hello", "1.0")}, [])
    assert chosen(u, "hello", recommends=True) == ({("hello", "1.0"), ("hello-doc", "1.0")}, [])


def test_alternatives_take_the_first_satisfiable() -> None:
    u = universe(rec("app", depends="nosuch | old (>= 2) | mid | last"), rec("old", "1.0"), rec("mid"), rec("last"))
    assert chosen(u, "app") == ({("app", "1.0"), ("mid", "1.0")}, [])


def test_an_alternative_already_chosen_is_reused() -> None:
    u = universe(rec("app", depends="first | second, needs-second"), rec("first"), rec("second"),
                 rec("needs-second", depends="second"))
    names = {n for n, _ in chosen(u, "app")[0]}
    assert {"first", "second"} <= names  # apt installs `first` for the group: it is the first satisfiable


def test_virtual_packages_through_provides() -> None:
    u = universe(rec("mailer", depends="mail-transport-agent"), rec("tinymta", provides="mail-transport-agent"))
    assert chosen(u, "mailer") == ({("mailer", "1.0"), ("tinymta", "1.0")}, [])


def test_a_versioned_dependency_on_a_virtual_package_needs_a_versioned_provides() -> None:
    u = universe(rec("plugin", depends="abi (>= 2)"), rec("unversioned", provides="abi"),
                 rec("libold", provides="abi (= 1)"), rec("libnew", "2.0", suite="bookworm-updates", provides="abi (= 2)"))
    assert chosen(u, "plugin") == ({("plugin", "1.0"), ("libnew", "2.0")}, [])
    alone = universe(rec("plugin", depends="abi (>= 2)"), rec("unversioned", provides="abi"))
    assert chosen(alone, "plugin") == (
        {("plugin", "1.0")},
        ["plugin -> abi (>= 2) -> not satisfiable in bookworm, bookworm-updates main "
         "(only provided without a matching version)"])


def test_newest_candidate_across_suites_and_the_newest_satisfying_a_constraint() -> None:
    u = universe(rec("hello", "2.10-2"), rec("hello", "2.10-3", suite="bookworm-updates"),
                 rec("pinned", depends="lib (<< 2)"), rec("lib", "1.5"), rec("lib", "2.1", suite="bookworm-updates"))
    assert chosen(u, "hello")[0] == {("hello", "2.10-3")}
    assert chosen(u, "pinned")[0] == {("pinned", "1.0"), ("lib", "1.5")}


def test_the_same_version_in_two_suites_is_taken_once_from_the_first() -> None:
    u = universe(rec("hello"), rec("hello", suite="bookworm-updates"))
    result = resolve(u, ClosureOptions(("hello",)))
    assert [(r.name, r.suite) for r in result.chosen] == [("hello", "bookworm")]


def test_latest_keeps_the_n_newest_versions_of_requested_packages_with_their_needs() -> None:
    u = universe(rec("hello", "1", depends="lib (<< 2)"), rec("hello", "2", depends="lib (>= 2)"),
                 rec("hello", "3", suite="bookworm-updates", depends="lib (>= 2)"), rec("lib", "1"), rec("lib", "2"))
    assert chosen(u, "hello", latest=2)[0] == {("hello", "3"), ("hello", "2"), ("lib", "2")}
    assert chosen(u, "hello", latest=5)[0] == {("hello", "3"), ("hello", "2"), ("hello", "1"), ("lib", "2"), ("lib", "1")}


def test_all_takes_every_package_of_every_suite() -> None:
    u = universe(rec("aa"), rec("bb", depends="nosuch"), rec("aa", "2", suite="bookworm-updates"))
    assert chosen(u, everything=True) == ({("aa", "1.0"), ("aa", "2"), ("bb", "1.0")}, [])


def test_architecture_all_counts_and_other_architectures_do_not() -> None:
    u = universe(rec("hello", depends="data, only-i386"), rec("data", arch="all"), rec("only-i386", arch="i386"))
    names, warnings = chosen(u, "hello")
    assert names == {("hello", "1.0"), ("data", "1.0")}
    assert warnings == ["hello -> only-i386 -> not found in bookworm, bookworm-updates main"]


def test_multi_arch_qualifiers() -> None:
    u = universe(rec("tool", depends="python3:any, perl:any"), rec("python3", multi_arch="allowed"),
                 rec("perl", multi_arch="foreign"),
                 rec("lib", depends="libfoo:amd64, libdata:native, libx:i386"), rec("libfoo", multi_arch="same"),
                 rec("libdata", arch="all", multi_arch="foreign"), rec("libx", multi_arch="same"))
    names, warnings = chosen(u, "tool")
    # `:any` is satisfied only by Multi-Arch: allowed (dpkg's deparchsatisfied), not by foreign
    assert names == {("tool", "1.0"), ("python3", "1.0")}
    assert warnings == ["tool -> perl:any -> not satisfiable in bookworm, bookworm-updates main (has 1.0)"]
    names, warnings = chosen(u, "lib")
    assert names == {("lib", "1.0"), ("libfoo", "1.0"), ("libdata", "1.0")}
    assert warnings == ["lib -> libx:i386 -> not satisfiable in bookworm, bookworm-updates main (has 1.0)"]


def test_architecture_restrictions_in_a_dependency_are_honoured() -> None:
    u = universe(rec("hello", depends="only-on-i386 [i386], on-amd64 [amd64], not-on-i386 [!i386]"),
                 rec("on-amd64"), rec("not-on-i386"))
    assert chosen(u, "hello") == ({("hello", "1.0"), ("on-amd64", "1.0"), ("not-on-i386", "1.0")}, [])


def test_essential_packages_are_included_by_default_with_their_needs() -> None:
    u = universe(rec("hello"), rec("base-files", essential=True, priority="required", depends="libbase"),
                 rec("libbase", priority="required"), rec("optional-thing"))
    assert chosen(u, "hello")[0] == {("hello", "1.0"), ("base-files", "1.0"), ("libbase", "1.0")}


def test_without_base_leaves_out_what_the_base_system_has_without_warning() -> None:
    u = universe(rec("hello", depends="libc6 (>= 2.34), helper"), rec("libc6", "2.36", priority="required"),
                 rec("helper", depends="coreutils"), rec("coreutils", essential=True),
                 rec("bash", essential=True, depends="base-lib"), rec("base-lib"))
    assert chosen(u, "hello", without_base=True) == ({("hello", "1.0"), ("helper", "1.0")}, [])
    # asked for by name, a base package is mirrored anyway
    assert ("libc6", "2.36") in chosen(u, "libc6", without_base=True)[0]


def test_an_unsatisfiable_dependency_is_a_warning_naming_the_chain() -> None:
    u = universe(rec("hello", depends="libc6 (>= 2.34)"), suites=("bookworm",))
    assert chosen(u, "hello") == ({("hello", "1.0")}, ["hello -> libc6 (>= 2.34) -> not found in bookworm main"])
    deep = universe(rec("app", depends="libmid"), rec("libmid", depends="libc6 (>= 2.34)"), rec("libc6", "2.31"),
                    suites=("bookworm",))
    assert chosen(deep, "app")[1] == [
        "app -> libmid -> libc6 (>= 2.34) -> not satisfiable in bookworm main (has 2.31)"]
    alternatives = universe(rec("app", depends="aa | bb (>= 2)"), rec("bb", "1"), suites=("bookworm",))
    assert chosen(alternatives, "app")[1] == [
        "app -> aa | bb (>= 2) -> aa: not found in bookworm main; bb: not satisfiable in bookworm main (has 1)"]


def test_a_requested_package_that_does_not_exist_is_a_warning_and_a_virtual_one_takes_a_provider() -> None:
    u = universe(rec("tinymta", provides="mail-transport-agent"), suites=("bookworm",))
    assert chosen(u, "nosuch") == (set(), ["nosuch -> not found in bookworm main"])
    assert chosen(u, "mail-transport-agent") == ({("tinymta", "1.0")}, [])


def test_among_providers_the_more_important_one_wins() -> None:
    u = universe(rec("needs-awk", depends="awk"), rec("gawk", provides="awk", priority="optional"),
                 rec("mawk", provides="awk", priority="required"), suites=("bookworm",))
    assert chosen(u, "needs-awk")[0] == {("needs-awk", "1.0"), ("mawk", "1.0")}


def test_an_unreadable_dependency_field_is_a_warning() -> None:
    u = universe(rec("hello", depends="Broken ((("), suites=("bookworm",))
    names, warnings = chosen(u, "hello")
    assert names == {("hello", "1.0")}
    assert warnings == ["hello -> unreadable dependency field: not a dependency: 'Broken ((('"]
