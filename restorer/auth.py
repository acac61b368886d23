"""Who may read the index and who may use the admin pages.

Accounts live in ``keys/site-users.json`` (mode 0600): passwords as salted
scrypt hashes, tokens as sha256 hashes (tokens are long random strings, so
a fast hash is enough). Clients authenticate with HTTP basic auth (pip, uv,
apt and dnf all send it) or ``Authorization: Bearer <token>``; a token can
also be sent as the basic-auth password of the user ``__token__``.

``[server] auth`` in reservoir.toml: ``"none"`` (default: anonymous read on
a closed network), ``"basic"`` or ``"token"``: the index then requires a
valid password or token. Admin pages always require an admin account.

The same accounts are written as an nginx ``htpasswd`` file ({SSHA}
entries) for ``serve --nginx-config``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from reservoir.errors import ConfigError

AuthMode = Literal["none", "basic", "token"]
AUTH_MODES: tuple[AuthMode, ...] = ("none", "basic", "token")
USERS_FILE = "site-users.json"
HTPASSWD_FILE = "site-htpasswd"
TOKEN_USER = "__token__"
SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass
class Account:
    name: str
    admin: bool = False
    password_scrypt: str = ""  # hex salt $ hex hash
    password_ssha: str = ""  # nginx {SSHA} form
    token_sha256: list[str] = field(default_factory=list)


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    return f"{salt.hex()}${_scrypt(password, salt).hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        salt_hex, hash_hex = stored.split("$", 1)
        expected = bytes.fromhex(hash_hex)
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(password, salt), expected)


def ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - nginx's {SSHA} format
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class AccountStore:
    """The accounts file of a site home."""

    keys_dir: Path

    @property
    def path(self) -> Path:
        return self.keys_dir / USERS_FILE

    def load(self) -> dict[str, Account]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{self.path}: not valid JSON ({exc})") from exc
        return {name: Account(name=name, **{k: v for k, v in a.items() if k != "name"}) for name, a in raw.items()}

    def save(self, accounts: dict[str, Account]) -> None:
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({name: asdict(a) for name, a in sorted(accounts.items())}, f, indent=2)
        os.replace(tmp, self.path)
        self.write_htpasswd(accounts)

    def write_htpasswd(self, accounts: dict[str, Account]) -> Path:
        path = self.keys_dir / HTPASSWD_FILE
        lines = [f"{a.name}:{a.password_ssha}" for a in accounts.values() if a.password_ssha]
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + ("\n" if lines else ""))
        os.replace(tmp, path)
        return path

    def set_password(self, name: str, password: str, *, admin: bool) -> None:
        if not name or ":" in name or name == TOKEN_USER:
            raise ConfigError(f"invalid user name {name!r}", hint="no colon, not __token__")
        if len(password) < 8:
            raise ConfigError(f"password for {name} is too short", hint="use at least 8 characters")
        accounts = self.load()
        account = accounts.get(name) or Account(name=name)
        account.admin = admin or account.admin
        account.password_scrypt = hash_password(password)
        account.password_ssha = ssha(password)
        accounts[name] = account
        self.save(accounts)

    def new_token(self, name: str, *, admin: bool) -> str:
        accounts = self.load()
        account = accounts.get(name) or Account(name=name)
        account.admin = admin or account.admin
        token = "rsv_" + secrets.token_urlsafe(32)
        account.token_sha256.append(token_hash(token))
        accounts[name] = account
        self.save(accounts)
        return token

    def remove(self, name: str) -> bool:
        accounts = self.load()
        if accounts.pop(name, None) is None:
            return False
        self.save(accounts)
        return True


@dataclass
class Authenticator:
    """Checks Authorization headers; caches successes briefly since scrypt is slow by design."""

    store: AccountStore
    mode: AuthMode
    cache_s: float = 60.0
    _accounts: dict[str, Account] = field(default_factory=dict, init=False)
    _mtime: float = field(default=-1.0, init=False)
    _verified: dict[str, tuple[float, Account]] = field(default_factory=dict, init=False)

    def _refresh(self) -> None:
        try:
            mtime = self.store.path.stat().st_mtime
        except FileNotFoundError:
            mtime = 0.0
        if mtime != self._mtime:
            self._accounts = self.store.load()
            self._mtime = mtime
            self._verified.clear()

    def has_admins(self) -> bool:
        self._refresh()
        return any(a.admin for a in self._accounts.values())

    def identify(self, header: str | None) -> Account | None:
        """The account an Authorization header proves, or None."""
        if not header:
            return None
        self._refresh()
        key = hashlib.sha256(header.encode()).hexdigest()
        cached = self._verified.get(key)
        now = time.monotonic()
        if cached and cached[0] > now:
            return cached[1]
        account = self._check(header)
        if account is not None:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[key] = (now + self.cache_s, account)
        return account

    def _check(self, header: str) -> Account | None:
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return self._by_token(value.strip())
        if scheme != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        if not sep:
            return None
        if user == TOKEN_USER:
            return self._by_token(password)
        account = self._accounts.get(user)
        if account is None:
            return self._by_token(password) if self.mode == "token" else None
        if self.mode != "token" and account.password_scrypt and check_password(password, account.password_scrypt):
            return account
        return self._by_token(password)

    def _by_token(self, token: str) -> Account | None:
        digest = token_hash(token)
        for account in self._accounts.values():
            if any(hmac.compare_digest(digest, h) for h in account.token_sha256):
                return account
        return None


def auth_mode(value: object) -> AuthMode:
    if value is None:
        return "none"
    if value not in AUTH_MODES:
        raise ConfigError(f"[server] auth must be one of {', '.join(AUTH_MODES)}, not {value!r}")
    return value  # type: ignore[return-value]
