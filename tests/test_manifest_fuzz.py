"""Fuzzing the bundle readers: hostile manifests and tables of contents are refused with one BundleError line.

A seeded mutator (tests/support/manifest_fuzz.py) makes a fixed number of
inputs, so the run is bounded and a failure reproduces. Inputs that broke
the readers before the schema, and the hostile manifests of issue 10, are
kept in tests/data/bad-manifests and tests/data/bad-tocs and replayed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.manifest_fuzz import mutants, valid_manifest, valid_toc
from transferer.format import BundleError, Manifest, parse_manifest, parse_toc
from transferer.schema import installed_ecosystems

DATA = Path(__file__).parent / "data"
EXAMPLES = 1500


def refused_in_one_line(parse, data: bytes) -> None:  # type: ignore[no-untyped-def]
    try:
        parse(data)
    except BundleError as exc:
        assert len(str(exc).splitlines()) == 1, str(exc)
        assert len(str(exc)) < 400, str(exc)
    # Anything else propagates and fails the test with the input's traceback.


def accepted_is_safe(manifest: Manifest) -> None:
    """What the schema lets through is safe to use as a path component, whatever the mutation."""
    schema = installed_ecosystems()["pypi"]
    for rec in manifest.releases:
        schema.check_name(rec["name"])
        schema.check_version(rec["version"])
        for artifact in rec["artifacts"]:
            assert "/" not in artifact["filename"] and artifact["filename"] not in (".", "..")


def test_the_seed_documents_are_valid() -> None:
    parse_manifest(json.dumps(valid_manifest()).encode())
    parse_toc(json.dumps(valid_toc()).encode())


@pytest.mark.parametrize("seed", [1, 2])
def test_mutated_manifests_parse_or_raise_bundle_error(seed: int) -> None:
    accepted = 0
    for data in mutants(valid_manifest(), seed, EXAMPLES):
        try:
            manifest = parse_manifest(data)
        except BundleError as exc:
            assert len(str(exc).splitlines()) == 1, str(exc)
            continue
        accepted_is_safe(manifest)
        accepted += 1
    # The mutator must also leave some documents valid, or it only tests the JSON parser.
    assert 0 < accepted < EXAMPLES


@pytest.mark.parametrize("seed", [1, 2])
def test_mutated_tocs_parse_or_raise_bundle_error(seed: int) -> None:
    for data in mutants(valid_toc(), seed, EXAMPLES):
        refused_in_one_line(parse_toc, data)


def corpus(folder: str) -> list[Path]:
    paths = sorted((DATA / folder).glob("*.json"))
    assert paths, f"tests/data/{folder} is empty"
    return paths


@pytest.mark.parametrize("path", corpus("bad-manifests"), ids=lambda p: p.name)
def test_every_bad_manifest_in_the_corpus_is_refused(path: Path) -> None:
    with pytest.raises(BundleError) as refused:
        parse_manifest(path.read_bytes())
    assert len(str(refused.value).splitlines()) == 1


@pytest.mark.parametrize("path", corpus("bad-tocs"), ids=lambda p: p.name)
def test_every_bad_toc_in_the_corpus_is_refused(path: Path) -> None:
    with pytest.raises(BundleError) as refused:
        parse_toc(path.read_bytes())
    assert len(str(refused.value).splitlines()) == 1
