"""Declared licenses, per ecosystem, normalised to SPDX expressions.

Each parser is a pure function of the metadata text, so ecosystems that have
no downloader yet (Debian, RPM, CRAN) are ready when theirs lands. A result of
None means "nothing declared"; `Declared.spdx` is None when something was
declared but could not be read as SPDX, which makes the vetter scan files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.parser import HeaderParser
from functools import lru_cache

from license_expression import ExpressionError, Licensing, get_spdx_licensing

# Names people write instead of SPDX ids: Fedora's pre-2022 RPM License
# tags, CRAN's short names and the free text PyPI `License:` fields carry.
LEGACY_NAMES: dict[str, str] = {
    "mit": "MIT", "mit license": "MIT", "the mit license": "MIT", "expat": "MIT",
    "bsd": "BSD-3-Clause", "bsd license": "BSD-3-Clause", "new bsd": "BSD-3-Clause", "bsd-3": "BSD-3-Clause",
    "bsd 3-clause": "BSD-3-Clause", "3-clause bsd": "BSD-3-Clause", "bsd_3_clause": "BSD-3-Clause",
    "bsd 3-clause license": "BSD-3-Clause", "bsd 2-clause license": "BSD-2-Clause",
    "bsd 2-clause": "BSD-2-Clause", "bsd_2_clause": "BSD-2-Clause", "simplified bsd": "BSD-2-Clause",
    "asl 2.0": "Apache-2.0", "apache 2.0": "Apache-2.0", "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0", "apache software license": "Apache-2.0", "apache": "Apache-2.0",
    "apache-2": "Apache-2.0", "apache 2": "Apache-2.0", "apache license": "Apache-2.0",
    "gplv2": "GPL-2.0-only", "gplv2+": "GPL-2.0-or-later", "gplv3": "GPL-3.0-only", "gplv3+": "GPL-3.0-or-later",
    "gpl-2": "GPL-2.0-only", "gpl-3": "GPL-3.0-only", "gpl-2 | gpl-3": "GPL-2.0-only OR GPL-3.0-only",
    # No version named: SPDX reads that as any version.
    "gnu general public license (gpl)": "GPL-1.0-or-later",
    "lgplv2": "LGPL-2.0-only", "lgplv2+": "LGPL-2.0-or-later", "lgplv2.1": "LGPL-2.1-only",
    "lgplv2.1+": "LGPL-2.1-or-later", "lgplv3": "LGPL-3.0-only", "lgplv3+": "LGPL-3.0-or-later",
    "lgpl-2": "LGPL-2.0-only", "lgpl-2.1": "LGPL-2.1-only", "lgpl-3": "LGPL-3.0-only",
    "agplv3": "AGPL-3.0-only", "agplv3+": "AGPL-3.0-or-later", "agpl-3": "AGPL-3.0-only",
    "mpl-2.0": "MPL-2.0", "mplv2.0": "MPL-2.0", "mpl 2.0": "MPL-2.0", "psf": "PSF-2.0", "python": "PSF-2.0",
    "psfl": "PSF-2.0", "python software foundation license": "PSF-2.0", "isc license": "ISC", "zlib": "Zlib",
    "public domain": "LicenseRef-scancode-public-domain", "unlicense": "Unlicense", "cc0": "CC0-1.0",
    "artistic-2.0": "Artistic-2.0", "epl-2.0": "EPL-2.0", "boost": "BSL-1.0", "cecill-2": "CECILL-2.0",
}

# Trove classifiers that name exactly one SPDX license.
CLASSIFIERS: dict[str, str] = {
    "License :: OSI Approved :: MIT License": "MIT",
    "License :: OSI Approved :: MIT No Attribution License (MIT-0)": "MIT-0",
    "License :: OSI Approved :: Apache Software License": "Apache-2.0",
    "License :: OSI Approved :: BSD License": "BSD-3-Clause",
    "License :: OSI Approved :: ISC License (ISCL)": "ISC",
    "License :: OSI Approved :: GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "License :: OSI Approved :: GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "License :: OSI Approved :: GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "License :: OSI Approved :: GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.0-only",
    "License :: OSI Approved :: GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    "License :: OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "License :: OSI Approved :: GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "License :: OSI Approved :: GNU Affero General Public License v3": "AGPL-3.0-only",
    "License :: OSI Approved :: GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "License :: OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "License :: OSI Approved :: The Unlicense (Unlicense)": "Unlicense",
    "License :: OSI Approved :: zlib/libpng License": "Zlib",
    "License :: OSI Approved :: Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "License :: OSI Approved :: Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "License :: CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
    "License :: Public Domain": "LicenseRef-scancode-public-domain",
    "License :: Other/Proprietary License": "LicenseRef-scancode-proprietary-license",
}


@dataclass(frozen=True)
class Declared:
    """What a package says about its license: the raw text and its SPDX form (None: not SPDX)."""

    raw: str
    spdx: str | None
    source: str  # which field it came from, e.g. "License-Expression"


@lru_cache(maxsize=1)
def licensing() -> Licensing:
    return get_spdx_licensing()


def to_spdx(text: str) -> str | None:
    """The SPDX expression `text` denotes (ids, legacy names), or None when it is not one."""
    text = text.strip()
    if not text or "\n" in text.strip():
        return legacy_name(text)
    named = legacy_name(text)
    if named:
        return named
    return spdx_expression(text)


def spdx_expression(text: str) -> str | None:
    """`text` validated and normalised as an SPDX expression (LicenseRef-* kept as is)."""
    try:
        info = licensing().validate(text)
    except (ExpressionError, AttributeError):
        # license-expression 30.4 raises AttributeError on some syntax errors instead of reporting them.
        return None
    if info.normalized_expression and not info.errors:
        return str(info.normalized_expression)
    if info.invalid_symbols and all(str(s).startswith("LicenseRef-") for s in info.invalid_symbols):
        try:
            return str(licensing().parse(text, validate=False, simple=False))
        except ExpressionError:
            return None
    return None


def legacy_name(text: str) -> str | None:
    return LEGACY_NAMES.get(re.sub(r"\s+", " ", text.strip().lower()))


def join_and(expressions: list[str]) -> str | None:
    """Several licenses that all apply, as one normalised expression."""
    unique = list(dict.fromkeys(e for e in expressions if e))
    if not unique:
        return None
    if len(unique) == 1:
        return unique[0]
    return spdx_expression(" AND ".join(f"({e})" for e in unique))


def join_or(expressions: list[str]) -> str | None:
    unique = list(dict.fromkeys(e for e in expressions if e))
    if len(unique) <= 1:
        return unique[0] if unique else None
    return spdx_expression(" OR ".join(f"({e})" for e in unique))


# --- PyPI -------------------------------------------------------------------

# Classifiers that name a family, not one license: consistent with any member of it.
CLASSIFIER_FAMILIES: dict[str, tuple[str, ...]] = {
    "License :: OSI Approved :: BSD License": ("BSD-",),
    "License :: OSI Approved :: Apache Software License": ("Apache-",),
    "License :: OSI Approved :: Python Software Foundation License": ("PSF-", "Python-"),
}


def declared_pypi(license_expression: str | None, license_text: str | None, classifiers: list[str]) -> Declared | None:
    """PEP 639 License-Expression first, then the License field, then trove classifiers.

    A License field is read together with the classifiers: one that names
    another license (``License: BSD`` beside ``License :: Other/Proprietary
    License``) is ANDed in, so the conflict reaches the verdict instead of
    being dropped.
    """
    licensed = [c for c in classifiers if c.startswith("License ::")]
    if license_expression and license_expression.strip():
        return Declared(license_expression.strip(), spdx_expression(license_expression), "License-Expression")
    if license_text and license_text.strip() and license_text.strip().upper() not in ("UNKNOWN", "NONE"):
        spdx = to_spdx(license_text)
        others = _classifiers_beyond(spdx, licensed)
        if not others:
            return Declared(license_text.strip(), spdx, "License")
        raw = "; ".join([license_text.strip(), *others])
        return Declared(raw, join_and([spdx, *(CLASSIFIERS[c] for c in others)]) if spdx else None, "License+Classifier")
    if licensed:
        mapped = [CLASSIFIERS.get(c) for c in licensed]
        spdx = join_or([m for m in mapped if m]) if all(mapped) else None
        return Declared("; ".join(licensed), spdx, "Classifier")
    return None


def license_ids(expression: str | None) -> list[str]:
    """Every license id (exceptions included) an expression names."""
    if not expression:
        return []
    try:
        return [str(k) for k in licensing().license_keys(expression)]
    except ExpressionError:
        return []


def _classifiers_beyond(spdx: str | None, classifiers: list[str]) -> list[str]:
    """The license classifiers naming a license that the expression `spdx` does not contain."""
    ids = license_ids(spdx)
    beyond = []
    for classifier in classifiers:
        mapped = CLASSIFIERS.get(classifier)
        if not ids or mapped is None or mapped in ids:  # a vague classifier ("OSI Approved") says nothing more
            continue
        family = CLASSIFIER_FAMILIES.get(classifier)
        if family and any(i.startswith(family) for i in ids):
            continue
        beyond.append(classifier)
    return beyond


def declared_from_metadata(text: str) -> Declared | None:
    """The declaration in a METADATA / PKG-INFO file (RFC 822 headers)."""
    headers = HeaderParser().parsestr(text, headersonly=True)
    return declared_pypi(headers.get("License-Expression"), headers.get("License"), headers.get_all("Classifier") or [])


# --- Debian DEP-5 ------------------------------------------------------------

def declared_debian_copyright(text: str) -> Declared | None:
    """The licenses of every `Files:` paragraph of a DEP-5 machine-readable copyright file, ANDed."""
    if "Format:" not in text.split("\n\n", 1)[0]:
        return None  # free-form copyright: leave it to scancode
    names: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        fields = _dep5_fields(paragraph)
        if "files" in fields and "license" in fields:
            names.append(fields["license"].splitlines()[0].strip())
    if not names:
        return None
    mapped = [_debian_license(n) for n in names]
    spdx = join_and([m for m in mapped if m]) if all(mapped) else None
    return Declared(" AND ".join(dict.fromkeys(names)), spdx, "debian/copyright")


def _dep5_fields(paragraph: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    current = None
    for line in paragraph.splitlines():
        if line[:1] in (" ", "\t") and current:
            fields[current] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            current = key.strip().lower()
            fields[current] = value.strip()
    return fields


def _debian_license(name: str) -> str | None:
    # DEP-5 short names: "GPL-2+" means or-later, "|" is OR, "," / "and" is AND.
    parts = re.split(r"\s+(or|and)\s+|\s*\|\s*|\s*,\s*", name, flags=re.IGNORECASE)
    out: list[str] = []
    for part in parts:
        if part is None or part.lower() in ("or", "and", ""):
            if part and part.lower() in ("or", "and"):
                out.append(part.upper())
            continue
        spdx = _debian_short_name(part)
        if spdx is None:
            return None
        if out and out[-1] not in ("AND", "OR"):
            out.append("OR" if "|" in name else "AND")
        out.append(f"({spdx})")
    return spdx_expression(" ".join(out)) if out else None


def _debian_short_name(name: str) -> str | None:
    match = re.fullmatch(r"(L?GPL|AGPL)-(\d(?:\.\d)?)(\+?)", name.strip(), flags=re.IGNORECASE)
    if match:
        family, version, plus = match.group(1).upper(), match.group(2), match.group(3)
        version = version if "." in version else f"{version}.0"
        return f"{family}-{version}-{'or-later' if plus else 'only'}"
    if name.strip().lower() == "expat":
        return "MIT"
    return to_spdx(name)


# --- RPM ---------------------------------------------------------------------

def declared_rpm(tag: str) -> Declared | None:
    """An RPM `License:` tag: Fedora's SPDX form, or the old names ("GPLv2+ and BSD")."""
    tag = tag.strip()
    if not tag:
        return None
    spdx = spdx_expression(tag) if not re.search(r"\b(and|or)\b", tag) else None
    if spdx is None:
        spdx = _old_style_rpm(tag)
    return Declared(tag, spdx, "License")


def _old_style_rpm(tag: str) -> str | None:
    tokens = re.split(r"\s+(and|or)\s+", tag)
    out: list[str] = []
    for token in tokens:
        if token in ("and", "or"):
            out.append(token.upper())
            continue
        inner = token.strip().strip("()")
        spdx = to_spdx(inner)
        if spdx is None:
            return None
        out.append(f"({spdx})")
    return spdx_expression(" ".join(out))


# --- CRAN --------------------------------------------------------------------

def declared_cran(field: str) -> Declared | None:
    """A CRAN DESCRIPTION `License:` field: "GPL (>= 2)", "MIT + file LICENSE", "GPL-2 | GPL-3"."""
    field = " ".join(field.split())
    if not field:
        return None
    alternatives = [a.strip() for a in field.split("|")]
    mapped = [_cran_component(a) for a in alternatives]
    spdx = join_or([m for m in mapped if m]) if all(mapped) else None
    return Declared(field, spdx, "License")


def _cran_component(text: str) -> str | None:
    # "+ file LICENSE" adds terms (often just the copyright holder for MIT/BSD); the base license stands.
    base = re.sub(r"\s*\+\s*file\s+\S+", "", text).strip()
    if not base or base.lower().startswith("file "):
        return None
    match = re.fullmatch(r"(L?GPL|AGPL)\s*\(\s*>=\s*(\d(?:\.\d)?)\s*\)", base, flags=re.IGNORECASE)
    if match:
        family, version = match.group(1).upper(), match.group(2)
        version = version if "." in version else f"{version}.0"
        return f"{family}-{version}-or-later"
    match = re.fullmatch(r"(L?GPL|AGPL)-(\d(?:\.\d)?)", base, flags=re.IGNORECASE)
    if match:
        family, version = match.group(1).upper(), match.group(2)
        version = version if "." in version else f"{version}.0"
        return f"{family}-{version}-only"
    if base.upper() in ("GPL", "LGPL", "AGPL"):
        return f"{base.upper()}-2.0-or-later" if base.upper() != "AGPL" else "AGPL-3.0-or-later"
    return to_spdx(base)
