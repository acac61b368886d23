"""The APT index reader: Packages stanzas, dependency relations, the bundle schema, the index diff."""

from __future__ import annotations

import pytest

from downloader.apt.diff import diff, reflist
from downloader.apt.packages import IndexError_, check_pool_path, parse_packages
from downloader.apt.relations import Relation, RelationError, compare, parse_provides, parse_relations, satisfies
from downloader.apt.schema import SCHEMA, deb_filename, parse_version, pool_path
from transferer.schema import installed_ecosystems

SHA = "a" * 64


def stanza(name: str = "hello", version: str = "2.10-3", **extra: str) -> str:
    fields = {"Package": name, "Version": version, "Architecture": "amd64", "Maintainer": "Jörg Ünïcode <j@example.invalid>",
              "Description": "a test", "Filename": f"pool/main/h/{name}/{name}_{version}_amd64.deb",
              "Size": "1234", "SHA256": SHA}
    fields.update({k.replace("_", "-"): v for k, v in extra.items()})
    return "\n".join(f"{k}: {v}" for k, v in fields.items() if v is not None) + "\n"


def test_parses_the_fields_the_closure_needs_and_keeps_the_stanza() -> None:
    text = stanza(Depends="libc6 (>= 2.34)", Pre_Depends="dpkg (>= 1.15)", Provides="httpd", Multi_Arch="foreign",
                  Essential="yes", Priority="required", Section="web", Source="hello-src (1.0)") + \
        " multi-line description\n .\n more\n\n" + stanza("other", "1:1.0")
    records = parse_packages(text.encode(), "Packages", "bookworm", "main")
    assert [r.name for r in records] == ["hello", "other"]
    hello = records[0]
    assert (hello.version, hello.arch, hello.size, hello.sha256) == ("2.10-3", "amd64", 1234, SHA)
    assert (hello.depends, hello.pre_depends, hello.provides) == ("libc6 (>= 2.34)", "dpkg (>= 1.15)", "httpd")
    assert hello.multi_arch == "foreign" and hello.essential and hello.priority == "required"
    assert hello.source_name == "hello-src" and hello.suite == "bookworm" and hello.component == "main"
    assert "Jörg Ünïcode" in hello.control() and hello.control().endswith(" more")
    assert records[1].version == "1:1.0" and records[1].multi_arch == "no" and not records[1].essential


def test_folded_dependency_fields_are_joined() -> None:
    text = stanza(Depends="libc6 (>= 2.34),") + " libfoo1 | libbar1\n"
    [record] = parse_packages(text)
    assert parse_relations(record.depends) == parse_relations("libc6 (>= 2.34), libfoo1 | libbar1")


@pytest.mark.parametrize("text, reason", [
    (stanza() + "this line is no field\n", "stanza 1 (hello): not a field"),
    (" continuation first\n" + stanza(), "stanza 1: continuation line before any field"),
    (stanza(SHA256=None), "stanza 1 (hello): missing SHA256"),
    (stanza() + "\n" + stanza("two", SHA256="xyz"), "stanza 2 (two): SHA256 is not a sha256 digest"),
    (stanza(Filename="/etc/passwd"), "is not a relative path under pool/"),
    (stanza(Filename="pool/../../etc/passwd"), "is not a relative path under pool/"),
    (stanza(Filename="pool/main/h/.."), "is not a relative path under pool/"),
    (stanza(Filename="dists/x.deb"), "is not a relative path under pool/"),
    (stanza(Size="12x"), "Size is not a number"),
    (stanza(name="Bad_Name"), "not a Debian package name"),
    (stanza(version="abc"), "not a Debian version"),
    (stanza(Multi_Arch="maybe"), "unknown Multi-Arch"),
    (stanza() + "Version: 2\n", "field Version given twice"),
    (stanza() + "Filename: pool/main/x/x.deb\n", "field Filename given twice"),
    (stanza().replace("Version: 2.10-3", "Version: 2.10-3\n -4"), "field Version is folded"),
    (stanza() + "".join(f"X-Field-{i}: {'y' * 50}\n" for i in range(5000)) + "no colon here\n", "not a field"),
    (stanza().replace("\n", "\r\n"), "carriage returns"),
])
def test_a_bad_stanza_is_refused_in_one_line_naming_it(text: str, reason: str) -> None:
    with pytest.raises(IndexError_) as caught:
        parse_packages(text, "bookworm/main/binary-amd64/Packages")
    assert reason in caught.value.message
    assert caught.value.message.startswith("bookworm/main/binary-amd64/Packages: stanza")  or "carriage" in reason
    assert "\n" not in str(caught.value)


def test_pool_paths() -> None:
    assert check_pool_path("pool/main/h/hello/hello_1_amd64.deb")
    for bad in ("pool/../x.deb", "/pool/x.deb", "pool//x.deb", "pool/./x.deb", "x/pool/a.deb", "pool/a b.deb"):
        with pytest.raises(ValueError):
            check_pool_path(bad)


def test_relations_parse_alternatives_arch_qualifiers_restrictions_and_profiles() -> None:
    groups = parse_relations("a (>= 1.0) | b:any, c [amd64] <stage1>, d:native (<< 2), e (> 1)")
    assert groups[0] == (Relation("a", None, ">=", "1.0"), Relation("b", "any"))
    assert groups[1] == (Relation("c", archs=("amd64",), profiles=(("stage1",),)),)
    assert groups[2] == (Relation("d", "native", "<<", "2"),)
    assert groups[3][0].op == ">="  # the obsolete `>` is dpkg's `>=`
    assert groups[1][0].applies_on("amd64") and not groups[1][0].applies_on("i386")
    assert not Relation("x", archs=("!amd64",)).applies_on("amd64")
    assert parse_relations("") == ()
    for bad in ("a (>= )", "A", "a, , b", "a (~ 1)", "a []"):
        with pytest.raises(RelationError):
            parse_relations(bad)
    assert parse_provides("httpd, abi (= 2)") == (Relation("httpd"), Relation("abi", None, "=", "2"))
    with pytest.raises(RelationError):
        parse_provides("abi (>= 2)")


def test_version_constraints_use_debian_order() -> None:
    assert compare("1.0~rc1", "1.0") < 0 and compare("1:0.1", "2.0") > 0 and compare("1.0-1", "1.0-1") == 0
    assert satisfies("2.36-9", ">=", "2.34") and not satisfies("2.31", ">=", "2.34")
    assert satisfies("1.0", "<<", "1.0.1") and not satisfies("1.0", ">>", "1.0")
    assert satisfies("1.0", "<=", "1.0") and satisfies("1:1.0", "=", "1:1.0") and satisfies("3", None, None)


def test_schema_is_registered_and_checks_names_versions_and_files() -> None:
    assert installed_ecosystems()["apt"] is SCHEMA
    SCHEMA.check_name("libstdc++6")
    SCHEMA.check_version("1:2.10-3+deb12u1")
    SCHEMA.check_version("2.10")
    SCHEMA.check_filename("hello_2.10-3_amd64.deb", "hello", "1:2.10-3")
    SCHEMA.check_filename("hello_1%3a2.10-3_amd64.deb", "hello", "1:2.10-3")
    for name in ("Hello", "a", "-x", "a_b", "../x"):
        with pytest.raises(ValueError):
            SCHEMA.check_name(name)
    for version in ("", "a1", "1.0-", "x:1", "1:", "1.0_1", "1:2-3_4", " 1.0", "2:3", "1.0-a:b"):
        if version == "2:3":
            assert parse_version(version).epoch == 2  # a colon is an epoch
            continue
        with pytest.raises(ValueError):
            SCHEMA.check_version(version)
    for filename in ("hello_2.10-3_amd64.tar", "other_2.10-3_amd64.deb", "hello_2.10-4_amd64.deb",
                     "hello_1:2.10-3_amd64.deb", "../hello_2.10-3_amd64.deb", "hello_2.10-3_AMD64.deb"):
        with pytest.raises(ValueError):
            SCHEMA.check_filename(filename, "hello", "1:2.10-3")
    assert deb_filename("hello", "1:2.10-3", "amd64") == "hello_2.10-3_amd64.deb"
    assert pool_path("main", "glibc", "libc6_2.36_amd64.deb") == "pool/main/g/glibc/libc6_2.36_amd64.deb"
    assert pool_path("main", "libxml2", "f.deb") == "pool/main/libx/libxml2/f.deb"
    with pytest.raises(ValueError):
        pool_path("..", "hello", "f.deb")


def test_parse_version_splits_as_dpkg() -> None:
    version = parse_version("1:2.0-rc1-3ubuntu1")
    assert (version.epoch, version.upstream, version.revision) == (1, "2.0-rc1", "3ubuntu1")
    assert str(version) == "1:2.0-rc1-3ubuntu1" and version.without_epoch == "2.0-rc1-3ubuntu1"


def test_diff_names_added_removed_and_changed_files() -> None:
    old = parse_packages(stanza("aa", "1") + "\n" + stanza("bb", "1") + "\n" + stanza("cc", "1"))
    new = parse_packages(stanza("aa", "1") + "\n" + stanza("bb", "1", SHA256="b" * 64) + "\n" + stanza("dd", "1"))
    delta = diff(reflist(old), reflist(new))
    assert delta.added == [("dd", "1", "amd64")]
    assert delta.removed == [("cc", "1", "amd64")]
    assert delta.changed == [("bb", "1", "amd64")]
    assert diff(reflist(new), reflist(new)).empty


def test_the_fast_path_and_the_line_by_line_parser_agree() -> None:
    from downloader.apt.packages import _parse_lines

    text = "\n".join(stanza(f"pkg{i}", f"1.{i}", Depends=f"pkg{i + 1} (>= 1)", Description="x\n long\n .\n text")
                     for i in range(20))
    fast = parse_packages(text, "P", "s", "main")
    slow = _parse_lines(text.encode().decode("latin-1"), "P", "s", "main")
    assert fast == slow and len(fast) == 20
    with pytest.raises(IndexError_, match="stanza 2: .*missing Package"):
        parse_packages(stanza() + "\nDescription: alone\n")


def test_provided_names_agrees_with_parse_provides() -> None:
    from downloader.apt.relations import provided_names

    for text in ("httpd", "abi (= 2), x-y+z.1 (=1:2.0-1) , plain", "a:any (= 1)"):
        assert provided_names(text) == [(r.name, r.version or "") for r in parse_provides(text)]
    for bad in ("abi (>= 2)", "a | b", "A", "a,,b", "a (= )"):
        with pytest.raises(RelationError):
            provided_names(bad)
