"""The site's trusted hub keys and the hub id each one is bound to (`reservoir trust add|ls|rm`).

A key file from `reservoir key export` names its hub, so `trust add` binds
that hub to that key at once; a bare PEM key is bound on its hub's first
import (restorer.importer.check_hub_key). Either way a hub id has exactly
one key and a key signs for exactly one hub id.
"""

from __future__ import annotations

from sqlalchemy import delete, select

from reservoir.context import AppContext
from reservoir.errors import ConfigError
from reservoir.keys import add_trusted_key, fingerprint, hub_id_in, load_public_pem, remove_trusted_key, short, trusted_keys
from restorer.models import HubKey


def trust_key(app: AppContext, pem: bytes, source: str) -> str:
    """Trust the key in `pem` and bind the hub it names; returns what was done, in one line."""
    fp = fingerprint(load_public_pem(pem, source))
    hub_id = hub_id_in(pem, source)
    if hub_id is not None:
        with app.db.write_transaction() as session:
            bound = session.get(HubKey, hub_id)
            if bound is not None and bound.key_fingerprint != fp:
                raise ConfigError(
                    f"hub {hub_id[:8]} already signs with key {short(bound.key_fingerprint)}, not {short(fp)}",
                    hint=f"if the hub really has a new key, run `reservoir trust rm {short(bound.key_fingerprint)}` first",
                )
            other = session.scalars(select(HubKey).where(HubKey.key_fingerprint == fp)).first()
            if other is not None and other.hub_id != hub_id:
                raise ConfigError(
                    f"key {short(fp)} already signs for hub {other.hub_id[:8]}, not {hub_id[:8]}",
                    hint=f"if the key really moved to another hub, run `reservoir trust rm {short(fp)}` first",
                )
            if bound is None:
                session.add(HubKey(hub_id=hub_id, key_fingerprint=fp, bound_by="trust add"))
    add_trusted_key(app.home.keys_dir, pem, source)
    if hub_id is None:
        return f"trusting hub key {short(fp)}; its hub is bound to it on that hub's first import"
    return f"trusting hub key {short(fp)} for hub {hub_id[:8]}"


def describe_trust(app: AppContext) -> list[str]:
    """One line per trusted key (and per binding whose key is no longer trusted)."""
    keys = trusted_keys(app.home.keys_dir)
    with app.db.session() as session:
        bindings = {b.key_fingerprint: b for b in session.scalars(select(HubKey))}
    lines = []
    for fp in keys:
        b = bindings.get(fp)
        lines.append(f"{short(fp)}  hub {b.hub_id} (bound by {b.bound_by})" if b else f"{short(fp)}  no hub yet (bound on its first import)")
    for fp, b in sorted(bindings.items()):
        if fp not in keys:
            lines.append(f"{short(fp)}  hub {b.hub_id} (bound by {b.bound_by}; key no longer trusted)")
    return lines or ["this site trusts no hub key yet (run `reservoir trust add HUB_KEY_FILE`)"]


def untrust_key(app: AppContext, prefix: str) -> str:
    """Forget the key whose fingerprint starts with `prefix` and its hub binding; returns what was done."""
    with app.db.session() as session:
        bound = set(session.scalars(select(HubKey.key_fingerprint)))
    candidates = sorted({fp for fp in {*trusted_keys(app.home.keys_dir), *bound} if prefix and fp.startswith(prefix.lower())})
    if len(candidates) != 1:
        found = "no" if not candidates else "more than one"
        raise ConfigError(f"{found} trusted hub key starts with {prefix!r}", hint="`reservoir trust ls` lists them")
    [fp] = candidates
    with app.db.write_transaction() as session:
        hubs = list(session.scalars(select(HubKey.hub_id).where(HubKey.key_fingerprint == fp)))
        session.execute(delete(HubKey).where(HubKey.key_fingerprint == fp))
    remove_trusted_key(app.home.keys_dir, fp)
    unbound = f"; hub {hubs[0][:8]} is unbound until its next import or `trust add`" if hubs else ""
    return f"no longer trusting hub key {short(fp)}{unbound}"
