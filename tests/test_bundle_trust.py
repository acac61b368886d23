"""Which trusted key may speak for which hub, and what a hostile manifest file can make the site read."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from reservoir.context import AppContext
from reservoir.errors import ConfigError, IntegrityError
from reservoir.home import create_home
from reservoir.keys import SigningKey, add_trusted_key, create_signing_key, load_signing_key, public_key_file, public_pem, short
from restorer.importer import NotABundle, import_bundle, read_signed_manifest
from restorer.models import HubKey, ImportedBundle
from restorer.trust import describe_trust, trust_key, untrust_key
from tests.support.bundles import Pair, add_to_hub, imported_seqs, make_pair, site_catalog
from tests.support.site import wheel_named
from transferer.export import export_bundle
from transferer.format import MANIFEST, MAX_MANIFEST_BYTES, SIGNATURE, TOC, BundleError, PartRef, Toc


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    p = make_pair(tmp_path)
    yield p
    p.close()


@pytest.fixture
def hub_b(tmp_path: Path) -> Iterator[AppContext]:
    """A second hub with its own key and id."""
    home = create_home(tmp_path / "hub-b", "hub")
    create_signing_key(home.keys_dir)
    app = AppContext(home_root=home.root)
    yield app
    app.close()


def key_of(hub: AppContext) -> SigningKey:
    return load_signing_key(hub.home.keys_dir)


def export(pair: Pair, hub: AppContext, *wheels: Path) -> Path:
    add_to_hub(hub, *wheels)
    path = export_bundle(hub, pair.media, chunk_size=4 << 30).path
    assert path is not None
    return path


def forge(folder: Path, signer: SigningKey, **fields: object) -> Path:
    """A bundle folder with an empty payload whose manifest says `fields`, signed by `signer`."""
    folder.mkdir(parents=True)
    end_of_archive = b"\0" * 1024
    (folder / "payload.tar.000").write_bytes(end_of_archive)
    toc = Toc((PartRef("payload.tar.000", len(end_of_archive), hashlib.sha256(end_of_archive).hexdigest()),)).to_json()
    (folder / TOC).write_bytes(toc)
    doc = {
        "format": "reservoir-bundle",
        "format_version": 1,
        "created": "2024-01-01T00:00:00+00:00",
        "channels": [{"name": "py", "kind": "pypi", "upstream": "file:///upstream", "options": {}}],
        "releases": [],
        "removed": [],
        "blobs": [],
        "toc": {"sha256": hashlib.sha256(toc).hexdigest(), "size": len(toc)},
        **fields,
    }
    raw = json.dumps(doc, indent=1, sort_keys=True).encode()
    (folder / MANIFEST).write_bytes(raw)
    (folder / SIGNATURE).write_bytes(signer.sign(raw))
    return folder


def site_state(site: AppContext) -> tuple[object, ...]:
    """Everything an import may change: catalog, import records, bindings, and the published bytes."""
    with site.db.session() as s:
        records = sorted((b.hub_id, b.seq, b.key_fingerprint) for b in s.scalars(select(ImportedBundle)))
        bindings = sorted((b.hub_id, b.key_fingerprint) for b in s.scalars(select(HubKey)))
    trees = site.home.trees_dir
    published = sorted(
        (str(p.relative_to(trees)), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in trees.rglob("*")
        if p.is_file()
    )
    return site_catalog(site), records, bindings, published


def test_a_second_trusted_hub_cannot_pose_as_the_first(
    tmp_path: Path, pair: Pair, hub_b: AppContext, site_wheels: dict[str, Path]
) -> None:
    add_trusted_key(pair.site.home.keys_dir, public_pem(key_of(hub_b).public), "b.pub")
    a_id, a_key, b_key = pair.hub.home.instance_id, key_of(pair.hub), key_of(hub_b)
    assert import_bundle(pair.site, export(pair, pair.hub, wheel_named(site_wheels, "alpha-1.0"))).status == "imported"
    before = site_state(pair.site)

    # The bundle: hub A's id and fingerprint, an empty full catalog at a far sequence, signed by B.
    claims_a = forge(tmp_path / "claims-a", b_key, hub_id=a_id, key_fingerprint=a_key.fingerprint, seq=999999, base=0)
    with pytest.raises(BundleError, match=rf"claims key {short(a_key.fingerprint)} but trusted key {short(b_key.fingerprint)} signed it"):
        import_bundle(pair.site, claims_a)
    assert site_state(pair.site) == before

    # The same, honest about its key: hub A is bound to A's key.
    honest = forge(tmp_path / "honest", b_key, hub_id=a_id, key_fingerprint=b_key.fingerprint, seq=999999, base=0)
    with pytest.raises(BundleError) as refused:
        import_bundle(pair.site, honest)
    message = str(refused.value)
    assert short(a_key.fingerprint) in message and short(b_key.fingerprint) in message
    assert "impersonation" in message and "reservoir trust rm" in message and "\n" not in message
    assert site_state(pair.site) == before

    # Hub A's genuine next bundle is not taken for a replay.
    assert import_bundle(pair.site, export(pair, pair.hub, wheel_named(site_wheels, "beta"))).status == "imported"
    assert imported_seqs(pair.site) == [1, 2]
    assert sorted(site_catalog(pair.site)) == ["alpha==1.0", "beta==1.0"]
    with pair.site.db.session() as s:
        assert set(s.scalars(select(ImportedBundle.key_fingerprint))) == {a_key.fingerprint}


def test_a_key_signs_for_one_hub_only(tmp_path: Path, pair: Pair, hub_b: AppContext, site_wheels: dict[str, Path]) -> None:
    """B, bound to its own id by its first import, cannot start a new hub id either."""
    add_trusted_key(pair.site.home.keys_dir, public_pem(key_of(hub_b).public), "b.pub")
    b_key = key_of(hub_b)
    assert import_bundle(pair.site, export(pair, hub_b, wheel_named(site_wheels, "alpha-1.0"))).status == "imported"
    before = site_state(pair.site)
    other_id = forge(tmp_path / "new-id", b_key, hub_id=str(uuid.uuid4()), key_fingerprint=b_key.fingerprint, seq=1, base=0)
    with pytest.raises(BundleError, match=rf"key {short(b_key.fingerprint)}, which signs for hub {hub_b.home.instance_id[:8]}"):
        import_bundle(pair.site, other_id)
    assert site_state(pair.site) == before


def test_an_exported_key_binds_its_hub_at_trust_add(
    tmp_path: Path, pair: Pair, hub_b: AppContext, site_wheels: dict[str, Path]
) -> None:
    """With the hub named in its key file, B cannot claim A's id even before A's first bundle arrives."""
    a_id, a_key, b_key = pair.hub.home.instance_id, key_of(pair.hub), key_of(hub_b)
    assert "for hub" in trust_key(pair.site, public_key_file(a_key.public, a_id), "a.pub")
    trust_key(pair.site, public_key_file(b_key.public, hub_b.home.instance_id), "b.pub")
    before = site_state(pair.site)
    first = forge(tmp_path / "first", b_key, hub_id=a_id, key_fingerprint=b_key.fingerprint, seq=1, base=0)
    with pytest.raises(BundleError, match="impersonation"):
        import_bundle(pair.site, first)
    assert site_state(pair.site) == before
    assert import_bundle(pair.site, export(pair, pair.hub, wheel_named(site_wheels, "alpha-1.0"))).status == "imported"
    # Trusting another key for a bound hub is refused, in one line naming both keys.
    with pytest.raises(ConfigError, match=rf"hub {a_id[:8]} already signs with key {short(a_key.fingerprint)}, not {short(b_key.fingerprint)}"):
        trust_key(pair.site, public_key_file(b_key.public, a_id), "b-as-a.pub")


def test_trust_rm_unbinds_so_a_hub_can_change_its_key(
    tmp_path: Path, pair: Pair, hub_b: AppContext, site_wheels: dict[str, Path]
) -> None:
    a_id, a_key = pair.hub.home.instance_id, key_of(pair.hub)
    assert import_bundle(pair.site, export(pair, pair.hub, wheel_named(site_wheels, "alpha-1.0"))).status == "imported"
    assert describe_trust(pair.site) == [f"{short(a_key.fingerprint)}  hub {a_id} (bound by import)"]
    # The hub's operator replaces its key (here: B's key, carried under A's id).
    new_key = key_of(hub_b)
    assert "unbound" in untrust_key(pair.site, short(a_key.fingerprint))
    trust_key(pair.site, public_key_file(new_key.public, a_id), "new.pub")
    assert describe_trust(pair.site) == [f"{short(new_key.fingerprint)}  hub {a_id} (bound by trust add)"]
    rekeyed = forge(tmp_path / "rekeyed", new_key, hub_id=a_id, key_fingerprint=new_key.fingerprint, seq=2, base=1)
    assert import_bundle(pair.site, rekeyed).status == "imported"


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reservoir", "--home", str(home), *args], capture_output=True, text=True, timeout=120)


def test_trust_cli_add_ls_rm(tmp_path: Path) -> None:
    hub, site = tmp_path / "hub", tmp_path / "site"
    assert cli(hub, "init", "--role", "hub").returncode == 0
    assert cli(site, "init", "--role", "site").returncode == 0
    key_file = tmp_path / "hub.pub"
    assert cli(hub, "key", "export", "--out", str(key_file)).returncode == 0
    hub_app = AppContext(home_root=hub)
    hub_id, fp = hub_app.home.instance_id, key_of(hub_app).fingerprint
    hub_app.close()
    added = cli(site, "trust", "add", str(key_file))
    assert added.returncode == 0 and f"trusting hub key {short(fp)} for hub {hub_id[:8]}" in added.stdout
    assert f"{short(fp)}  hub {hub_id} (bound by trust add)" in cli(site, "trust", "ls").stdout
    removed = cli(site, "trust", "rm", short(fp))
    assert removed.returncode == 0 and "no longer trusting" in removed.stdout
    assert "trusts no hub key" in cli(site, "trust", "ls").stdout
    missing = cli(site, "trust", "rm", "0123")
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1


def test_an_oversize_manifest_is_refused_unread(tmp_path: Path, pair: Pair) -> None:
    folder = tmp_path / "huge"
    folder.mkdir()
    with (folder / MANIFEST).open("wb") as f:
        f.truncate(MAX_MANIFEST_BYTES + 1)  # sparse: costs no disk, would cost the cap in memory if read
    (folder / SIGNATURE).write_bytes(b"\0" * 64)
    tracemalloc.start()
    try:
        with pytest.raises(BundleError, match=rf"over the {MAX_MANIFEST_BYTES >> 20} MiB a manifest may be"):
            read_signed_manifest(folder, pair.site)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_the_signature_is_checked_before_the_manifest_is_parsed(tmp_path: Path, pair: Pair) -> None:
    stranger = create_signing_key(tmp_path / "stranger")
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / MANIFEST).write_bytes(b"{" * 100_000)  # would blow the JSON parser's nesting limit
    (folder / SIGNATURE).write_bytes(stranger.sign(b"{" * 100_000))
    with pytest.raises(IntegrityError, match="not from a trusted hub key"):
        read_signed_manifest(folder, pair.site)


def test_import_of_a_folder_that_is_not_a_bundle(tmp_path: Path, pair: Pair) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(NotABundle, match="is not a bundle folder: it has no manifest.json"):
        import_bundle(pair.site, folder)
    result = cli(pair.site.home.root, "import", str(folder))
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert "is not a bundle folder" in line and "yet" not in line


def test_the_migration_binds_hubs_a_site_imported_from_before(tmp_path: Path, db_url: str, site_wheels: dict[str, Path]) -> None:
    from alembic import command

    pair = make_pair(tmp_path, site_db_url=db_url)
    try:
        assert import_bundle(pair.site, export(pair, pair.hub, wheel_named(site_wheels, "alpha-1.0"))).status == "imported"
        database = pair.site.db
        cfg = database.alembic_config()
        with database.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "restorer_0001")
            command.upgrade(cfg, "heads")
        with database.session() as s:
            [binding] = s.scalars(select(HubKey)).all()
        assert (binding.hub_id, binding.key_fingerprint, binding.bound_by) == (
            pair.hub.home.instance_id, key_of(pair.hub).fingerprint, "migration"
        )
    finally:
        pair.close()
