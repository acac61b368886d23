"""Ed25519 keys: the hub signs bundle manifests, sites trust hub keys.

Keys are stored as PEM: ``keys/hub.key`` (private, mode 0600) and
``keys/hub.pub`` on a hub; ``keys/trusted/<fingerprint>.pub`` on a site.
A key's fingerprint is the sha256 of its raw 32-byte public key.

An exported hub key names its hub on a text line above the PEM block
(``Reservoir hub id: <id>``; PEM readers skip text before ``-----BEGIN``),
so a site can bind that hub id to that key when it is told to trust it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from reservoir.errors import ConfigError, IntegrityError

PRIVATE_NAME = "hub.key"
PUBLIC_NAME = "hub.pub"
TRUSTED_DIR = "trusted"
HUB_ID_LABEL = "Reservoir hub id:"
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SHORT = 16


def fingerprint(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def short(fingerprint: str) -> str:
    """The form messages and `trust ls` print."""
    return fingerprint[:SHORT]


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_file(public: Ed25519PublicKey, hub_id: str) -> bytes:
    """What `reservoir key export` writes: the hub id line, then the PEM block."""
    return f"{HUB_ID_LABEL} {hub_id}\n".encode() + public_pem(public)


def hub_id_in(data: bytes, source: str) -> str | None:
    """The hub id a key file names above its PEM block; None for a bare PEM key."""
    for line in data.split(b"-----BEGIN", 1)[0].decode("utf-8", "replace").splitlines():
        if line.startswith(HUB_ID_LABEL):
            hub_id = line[len(HUB_ID_LABEL) :].strip()
            if not HUB_ID_RE.match(hub_id):
                raise ConfigError(f"{source}: hub id {hub_id[:80]!r} is malformed", hint="export the key again on the hub")
            return hub_id
    return None


def load_public_pem(data: bytes, source: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError(f"{source}: not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{source}: not an Ed25519 public key")
    return key


@dataclass
class SigningKey:
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


def create_signing_key(keys_dir: Path) -> SigningKey:
    keys_dir.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = keys_dir / PRIVATE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    (keys_dir / PUBLIC_NAME).write_bytes(public_pem(private.public_key()))
    return SigningKey(private)


def load_signing_key(keys_dir: Path) -> SigningKey:
    path = keys_dir / PRIVATE_NAME
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(f"no signing key at {path}", hint="only a hub home made by `reservoir init --role hub` has one") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 private key")
    return SigningKey(private)


def add_trusted_key(keys_dir: Path, pem: bytes, source: str) -> str:
    """Trust a hub's public key; returns its fingerprint."""
    public = load_public_pem(pem, source)
    fp = fingerprint(public)
    trusted = keys_dir / TRUSTED_DIR
    trusted.mkdir(parents=True, exist_ok=True)
    (trusted / f"{fp}.pub").write_bytes(public_pem(public))
    return fp


def remove_trusted_key(keys_dir: Path, fingerprint: str) -> None:
    (keys_dir / TRUSTED_DIR / f"{fingerprint}.pub").unlink(missing_ok=True)


def trusted_keys(keys_dir: Path) -> dict[str, Ed25519PublicKey]:
    trusted = keys_dir / TRUSTED_DIR
    keys = {}
    for path in sorted(trusted.glob("*.pub")) if trusted.is_dir() else []:
        key = load_public_pem(path.read_bytes(), str(path))
        keys[fingerprint(key)] = key
    return keys


def verify_signature(keys: dict[str, Ed25519PublicKey], data: bytes, signature: bytes, what: str) -> str:
    """Return the fingerprint of the trusted key that signed `data`, or raise."""
    for fp, key in keys.items():
        try:
            key.verify(signature, data)
        except InvalidSignature:
            continue
        return fp
    raise IntegrityError(f"{what}: signature is not from a trusted hub key", hint="run `reservoir trust add HUB_KEY` with the hub's exported key")
