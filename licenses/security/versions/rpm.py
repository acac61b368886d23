"""RPM order: rpmvercmp as rpm's C implementation does it, and epoch:version-release on top.

Segments are runs of digits or of letters; other characters only separate.
`~` sorts before anything (even the end of the string: 1.0~rc1 < 1.0); `^`
sorts after the end of the string but before any further segment (1.0 <
1.0^git1 < 1.0.1). A numeric segment beats an alphabetic one.
"""

from __future__ import annotations


def _is_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _run(text: str, digits: bool) -> str:
    end = 0
    while end < len(text) and text[end].isascii() and (text[end].isdigit() if digits else text[end].isalpha()):
        end += 1
    return text[:end]


def rpmvercmp(a: str, b: str) -> int:
    if a == b:
        return 0
    one, two = a, b
    while one or two:
        one = one.lstrip("".join({c for c in one if not _is_alnum(c) and c not in "~^"}))
        two = two.lstrip("".join({c for c in two if not _is_alnum(c) and c not in "~^"}))
        if one.startswith("~") or two.startswith("~"):
            if not one.startswith("~"):
                return 1
            if not two.startswith("~"):
                return -1
            one, two = one[1:], two[1:]
            continue
        if one.startswith("^") or two.startswith("^"):
            if not one:
                return -1
            if not two:
                return 1
            if not one.startswith("^"):
                return 1
            if not two.startswith("^"):
                return -1
            one, two = one[1:], two[1:]
            continue
        if not (one and two):
            break
        numeric = one[0].isdigit()
        seg1, seg2 = _run(one, numeric), _run(two, numeric)
        one, two = one[len(seg1):], two[len(seg2):]
        if not seg2:
            # Different segment types: a number is newer than letters.
            return 1 if numeric else -1
        if numeric:
            seg1, seg2 = seg1.lstrip("0"), seg2.lstrip("0")
            if len(seg1) != len(seg2):
                return 1 if len(seg1) > len(seg2) else -1
        if seg1 != seg2:
            return 1 if seg1 > seg2 else -1
    if not one and not two:
        return 0
    return -1 if not one else 1


def split_evr(evr: str) -> tuple[int, str, str]:
    """"E:V-R" -> (epoch, version, release); a missing epoch is 0, a missing release empty."""
    epoch = 0
    if ":" in evr:
        head, evr = evr.split(":", 1)
        epoch = int(head) if head.isdigit() else 0
    version, _, release = evr.partition("-") if "-" in evr else (evr, "", "")
    if "-" in evr:
        version, release = evr.rsplit("-", 1)
    return epoch, version, release


def compare(a: str, b: str) -> int:
    ea, va, ra = split_evr(a)
    eb, vb, rb = split_evr(b)
    if ea != eb:
        return 1 if ea > eb else -1
    result = rpmvercmp(va, vb)
    if result or not (ra and rb):
        return result
    return rpmvercmp(ra, rb)
