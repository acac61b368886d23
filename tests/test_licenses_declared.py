"""Declared-license parsers (PyPI, Debian DEP-5, RPM, CRAN) and categories: pure functions."""

from __future__ import annotations

import pytest

from licenses.categories import Category, category_of
from licenses.declared import (
    declared_cran, declared_debian_copyright, declared_from_metadata, declared_pypi, declared_rpm, to_spdx,
)
from licenses.policy import Decision, load_policy
from reservoir.errors import ConfigError


@pytest.mark.parametrize(("expression", "license_text", "classifiers", "spdx", "source"), [
    ("MIT", None, [], "MIT", "License-Expression"),
    ("apache-2.0 or mit", None, [], "Apache-2.0 OR MIT", "License-Expression"),
    ("Not A License", "MIT", [], None, "License-Expression"),  # PEP 639: the expression wins, even unreadable
    (None, "MIT License", [], "MIT", "License"),
    (None, "BSD", [], "BSD-3-Clause", "License"),
    (None, "Copyright Acme, all rights reserved", [], None, "License"),
    (None, "UNKNOWN", ["License :: OSI Approved :: MIT License"], "MIT", "Classifier"),
    (None, None, ["License :: OSI Approved :: MIT License", "License :: OSI Approved :: Apache Software License"],
     "MIT OR Apache-2.0", "Classifier"),
    (None, None, ["License :: OSI Approved"], None, "Classifier"),
    # A classifier that agrees with the License field, or only names its family, adds nothing.
    (None, "MIT", ["License :: OSI Approved :: MIT License"], "MIT", "License"),
    (None, "BSD-2-Clause", ["License :: OSI Approved :: BSD License"], "BSD-2-Clause", "License"),
    # One that names another license is kept: the conflict reaches the verdict.
    (None, "BSD", ["License :: Other/Proprietary License"],
     "BSD-3-Clause AND LicenseRef-scancode-proprietary-license", "License+Classifier"),
    (None, "WTFPL", ["License :: Public Domain"], "WTFPL AND LicenseRef-scancode-public-domain", "License+Classifier"),
])
def test_pypi_declarations(expression: str | None, license_text: str | None, classifiers: list[str],
                           spdx: str | None, source: str) -> None:
    declared = declared_pypi(expression, license_text, classifiers)
    assert declared is not None
    assert (declared.spdx, declared.source) == (spdx, source)


def test_pypi_without_any_declaration() -> None:
    assert declared_pypi(None, "", ["Programming Language :: Python"]) is None


def test_metadata_file_headers() -> None:
    text = "Metadata-Version: 2.4\nName: x\nVersion: 1\nLicense-Expression: GPL-3.0-or-later\n\nbody\n"
    declared = declared_from_metadata(text)
    assert declared is not None and declared.spdx == "GPL-3.0-or-later"


DEP5 = """Format: https://example.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: foo

Files: *
Copyright: 2001 Someone
License: GPL-2+

Files: lib/*
Copyright: 2010 Other
License: LGPL-2.1 or Expat

Files: debian/*
License: Expat
 Permission is hereby granted...

License: GPL-2+
 On Debian systems...
"""


def test_debian_dep5_copyright() -> None:
    declared = declared_debian_copyright(DEP5)
    assert declared is not None
    assert declared.spdx == "GPL-2.0-or-later AND (LGPL-2.1-only OR MIT) AND MIT"


def test_debian_free_form_copyright_is_left_to_scancode() -> None:
    assert declared_debian_copyright("This package was debianized by someone.\n\nIt is GPL.\n") is None


@pytest.mark.parametrize(("tag", "spdx"), [
    ("GPL-2.0-or-later AND MIT", "GPL-2.0-or-later AND MIT"),  # Fedora's SPDX form
    ("GPLv2+", "GPL-2.0-or-later"),
    ("GPLv2+ and BSD", "GPL-2.0-or-later AND BSD-3-Clause"),
    ("ASL 2.0", "Apache-2.0"),
    ("LGPLv2+ or MIT", "LGPL-2.0-or-later OR MIT"),
    ("Redistributable, no modification permitted", None),
])
def test_rpm_license_tag(tag: str, spdx: str | None) -> None:
    declared = declared_rpm(tag)
    assert declared is not None and declared.spdx == spdx


@pytest.mark.parametrize(("field", "spdx"), [
    ("GPL (>= 2)", "GPL-2.0-or-later"),
    ("GPL-3", "GPL-3.0-only"),
    ("MIT + file LICENSE", "MIT"),
    ("GPL-2 | GPL-3", "GPL-2.0-only OR GPL-3.0-only"),
    ("LGPL (>= 2.1)", "LGPL-2.1-or-later"),
    ("file LICENSE", None),
])
def test_cran_license_field(field: str, spdx: str | None) -> None:
    declared = declared_cran(field)
    assert declared is not None and declared.spdx == spdx


def test_legacy_names_are_not_guessed() -> None:
    assert to_spdx("Some Custom License v7") is None


@pytest.mark.parametrize(("expression", "category"), [
    ("MIT", Category.PERMISSIVE),
    ("LGPL-2.1-only", Category.WEAK_COPYLEFT),
    ("GPL-3.0-only", Category.COPYLEFT),
    ("AGPL-3.0-only", Category.NETWORK_COPYLEFT),
    ("LicenseRef-scancode-proprietary-license", Category.PROPRIETARY),
    ("MIT OR GPL-3.0-only", Category.PERMISSIVE),  # a choice: the lenient one
    ("MIT AND GPL-3.0-only", Category.COPYLEFT),  # both apply: the strict one
    ("GPL-2.0-or-later WITH Classpath-exception-2.0", Category.WEAK_COPYLEFT),
    (None, Category.UNKNOWN),
])
def test_categories(expression: str | None, category: Category) -> None:
    assert category_of(expression) is category


def test_policy_defaults_overrides_and_exceptions() -> None:
    policy = load_policy({
        "ids": {"GPL-3.0-only": "allow"},
        "categories": {"weak-copyleft": "review"},
        "exceptions": [{"name": "Acme_Tool", "version": "1.*", "decision": "allow", "reason": "contract 42"}],
    })
    assert policy.decide("a", "1", "MIT", Category.PERMISSIVE).decision is Decision.ALLOW
    assert policy.decide("a", "1", "GPL-3.0-only", Category.COPYLEFT).decision is Decision.ALLOW
    assert policy.decide("a", "1", "LGPL-2.1-only", Category.WEAK_COPYLEFT).decision is Decision.REVIEW
    assert policy.decide("a", "1", "AGPL-3.0-only", Category.NETWORK_COPYLEFT).decision is Decision.REVIEW
    assert policy.decide("a", "1", "MIT AND LicenseRef-scancode-proprietary-license",
                         Category.PROPRIETARY).decision is Decision.DENY
    assert policy.decide("a", "1", "MIT OR LicenseRef-scancode-proprietary-license",
                         Category.PERMISSIVE).decision is Decision.ALLOW
    assert policy.decide("a", "1", None, Category.UNKNOWN).decision is Decision.REVIEW
    excepted = policy.decide("acme-tool", "1.4", "LicenseRef-scancode-proprietary-license", Category.PROPRIETARY)
    assert excepted.decision is Decision.ALLOW and "contract 42" in excepted.reason
    assert policy.decide("acme-tool", "2.0", "LicenseRef-scancode-proprietary-license",
                         Category.PROPRIETARY).decision is Decision.DENY


@pytest.mark.parametrize("section", [
    {"categories": {"copyleft": "maybe"}},
    {"categories": {"viral": "deny"}},
    {"exceptions": [{"version": "1"}]},
])
def test_bad_policy_is_one_line_config_error(section: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(section)
    assert "\n" not in str(info.value) and "reservoir.toml" in str(info.value)


@pytest.mark.parametrize(("name", "spdx"), [
    ("BSD 3-Clause License", "BSD-3-Clause"),
    ("GNU General Public License (GPL)", "GPL-1.0-or-later"),
])
def test_more_legacy_names(name: str, spdx: str) -> None:
    assert to_spdx(name) == spdx


@pytest.mark.parametrize(("member", "bearing"), [
    ("pydot-4.0.dist-info/licenses/LICENSES/Python-2.0.txt", True),  # PEP 639: any name under licenses/
    ("meson_python-0.18.dist-info/licenses/LICENSES/MIT.txt", True),
    ("LICENSES/Apache-2.0.txt", True),  # REUSE
    ("orderly_set-5.4.dist-info/MIT-LICENSE", True),
    ("pkg-1.0.dist-info/LICENSE.txt", True),
    ("pkg/licenses/__init__.py", False),  # code, not a license text
    ("pkg/deep/inside/licenses/data.json", False),  # a package's own folder named licenses
    ("licenses/data/rules.yml", False),
    ("pkg/license_check.py", False),
    ("pkg/models.txt", False),
])
def test_license_bearing_members(member: str, bearing: bool) -> None:
    from licenses.files import is_license_bearing

    assert is_license_bearing(member) is bearing
