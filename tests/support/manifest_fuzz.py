"""A seeded mutator of bundle manifests and tables of contents (tests/test_manifest_fuzz.py).

It starts from a valid document and applies a few structural or byte-level
mutations: hostile values where names, versions, numbers or records belong,
dropped and unknown keys, deep nesting, truncation and flipped bytes. The
same seed gives the same inputs, so a failure reproduces.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

HUB_ID = "0c6f3f8e-2a4b-4c1d-9e8f-1a2b3c4d5e6f"
SHA_A, SHA_B, SHA_C, SHA_D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)

HOSTILE: tuple[Any, ...] = (
    "/etc/x", "../x", "..", ".", "", "a/b", "a\\b", "x\x00y", "\ud800", "line\nbreak", "Alpha_Beta", "1.0 beta",
    "not a version", "x" * 5000, "pypi", "nix", "allowed", "bogus", "2026-01-02T03:04:05", "yesterday",
    0, -1, 1, 2**31, 2**63, 2**64, 10**40, 1.5, float("inf"), float("nan"), True, False, None,
    [], {}, [None], {"": None}, {"who": 1}, [[[[[[[[]]]]]]]], SHA_A, SHA_A.upper(),
)


def valid_manifest() -> dict[str, Any]:
    """A manifest the schema accepts, touching every kind of field."""
    return {
        "format": "reservoir-bundle",
        "format_version": 1,
        "hub_id": HUB_ID,
        "key_fingerprint": SHA_D,
        "seq": 2,
        "base": 1,
        "created": "2026-01-02T03:04:05+00:00",
        "channels": [{"name": "py", "kind": "pypi", "upstream": "file:///upstream", "options": {"packages": ["alpha"]}}],
        "releases": [{
            "channel": "py", "name": "alpha", "display_name": "Alpha", "version": "1.0", "gate": "allowed",
            "gate_reason": "license MIT (permissive): allow", "declared_license": "MIT",
            "meta": {
                "summary": "a", "requires_dist": ["beta>=1"], "requires_python": ">=3.8", "classifiers": [],
                "vetting": {
                    "declared": "MIT", "declared_raw": "MIT", "detected": None, "concluded": "MIT", "category": "permissive",
                    "evidence": [{"file": "LICENSE", "sha256": SHA_C, "spdx": "MIT", "start_line": 1, "end_line": 20,
                                  "score": 100.0, "rule": "mit.LICENSE", "note": ""}],
                    "decisions": [{"who": "legal", "when": "2026-01-02T03:04:05+00:00", "decision": "approve", "reason": "ok"}],
                    "advisories": [{"id": "PYSEC-1", "severity": "low", "malicious": False, "fixed": ["1.1"], "summary": "s"}],
                    "policy": {"decision": "allow", "reason": "MIT (permissive): allow"},
                    "disagreement": False,
                },
            },
            "artifacts": [{
                "filename": "alpha-1.0-py3-none-any.whl", "sha256": SHA_A, "size": 3, "url": "file:///upstream/alpha",
                "meta": {"packagetype": "bdist_wheel", "requires_python": None, "yanked": False,
                         "upload_time": "2026-01-02T03:04:05Z", "aux_blobs": {"metadata": SHA_B}},
            }],
        }],
        "removed": [{"channel": "py", "name": "alpha", "version": "0.9"}],
        "blobs": [{"sha256": SHA_A, "size": 3}, {"sha256": SHA_B, "size": 10}],
        "toc": {"sha256": SHA_C, "size": 120},
    }


def valid_toc() -> dict[str, Any]:
    return {"parts": [{"name": "payload.tar.000", "size": 4096, "sha256": SHA_A},
                      {"name": "payload.tar.001", "size": 1024, "sha256": SHA_B}]}


def _slots(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `doc` (down to a depth the mutator itself can walk)."""
    found = [path]
    if len(path) > 40:
        return found
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _slots(value, (*path, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += _slots(value, (*path, index))
    return found


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


def _mutate_tree(doc: Any, rng: random.Random) -> Any:
    path = rng.choice(_slots(doc))
    if not path:
        return rng.choice(HOSTILE)
    parent, last = _parent(doc, path), path[-1]
    action = rng.randrange(5)
    if action == 0:
        parent[last] = copy.deepcopy(rng.choice(HOSTILE))
    elif action == 1:
        del parent[last]
    elif action == 2 and isinstance(parent, dict):
        parent[rng.choice(["extra", "who", "name", "vetting", "aux_blobs", "meta"])] = copy.deepcopy(rng.choice(HOSTILE))
    elif action == 2 and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))  # a duplicate record
    elif action == 3:
        nested: Any = parent[last]
        for _ in range(rng.choice((2, 40, 60))):
            nested = [nested]
        parent[last] = nested
    else:
        value = parent[last]
        if isinstance(value, str) and value:
            cut = rng.randrange(len(value))
            parent[last] = value[:cut] + rng.choice(["/", "..", "\x00", "\ud800", " ", "_", "A", "-"]) + value[cut:]
        else:
            parent[last] = copy.deepcopy(rng.choice(HOSTILE))
    return doc


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True).encode("utf-8", "surrogatepass")


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            break
        action = rng.randrange(4)
        at = rng.randrange(len(buf))
        if action == 0:
            buf[at] ^= 1 << rng.randrange(8)
        elif action == 1:
            del buf[at:at + rng.randint(1, 16)]
        elif action == 2:
            buf[at:at] = rng.choice([b"\xff", b"\x00", b"[", b"{", b'"', b"\\u0000", b"\\ud800", b"NaN", b"1e999", b"[" * 100_000])
        else:
            del buf[at:]
    return bytes(buf)


def mutants(valid: dict[str, Any], seed: int, count: int) -> list[bytes]:
    """`count` mutated serializations of `valid`, the same for the same seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        doc = copy.deepcopy(valid)
        for _ in range(rng.randint(1, 3)):
            doc = _mutate_tree(doc, rng)
        data = _dump(doc)
        if rng.random() < 0.25:
            data = _mutate_bytes(data, rng)
        out.append(data)
    return out
