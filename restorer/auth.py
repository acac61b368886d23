"""Who may read the index and who may use the admin pages.

Accounts live in ``keys/site-users.json`` (mode 0600): passwords as salted
scrypt hashes, tokens as sha256 hashes (tokens are long random strings, so
a fast hash is enough). Clients authenticate with HTTP basic auth (pip, uv,
apt and dnf all send it) or ``Authorization: Bearer <token>``; a token can
also be sent as the basic-auth password of the user ``__token__``.

``[server] auth`` in reservoir.toml: ``"none"`` (default: anonymous read on
a closed network), ``"basic"`` or ``"token"``: the index then requires a
valid password or token. Admin pages always require an admin account.

A password is checked with one scrypt run in a thread pool, never on the
event loop, and an unknown user costs the same run against a dummy hash, so
the answer's timing does not tell which users exist. Failed attempts are
limited per client address (``FailedLogins``). The fast path only consults
the cache of credentials already verified.

nginx cannot read scrypt: when a password is set, its SHA-512-crypt form
(``$6$``, which nginx checks with the system's crypt(3)) is kept beside it
in the accounts file, and ``serve --nginx-config`` writes them to
``keys/site-htpasswd`` (mode 0600, or 0640 keeping the group an operator
gave it so that nginx's workers can read it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import secrets
import stat
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

from reservoir.errors import ConfigError

AuthMode = Literal["none", "basic", "token"]
AUTH_MODES: tuple[AuthMode, ...] = ("none", "basic", "token")
USERS_FILE = "site-users.json"
HTPASSWD_FILE = "site-htpasswd"
TOKEN_USER = "__token__"
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
# crypt(3)'s default for SHA-512-crypt: nginx runs it on every request (it caches nothing), so more rounds cost every pip request.
SHA512_CRYPT_ROUNDS = 5000


@dataclass
class Account:
    name: str
    admin: bool = False
    password_scrypt: str = ""  # hex salt $ hex hash
    password_crypt: str = ""  # SHA-512-crypt ($6$...), only for nginx's htpasswd
    token_sha256: list[str] = field(default_factory=list)


ACCOUNT_FIELDS = frozenset(f.name for f in fields(Account)) - {"name"}


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


def dummy_scrypt_hash() -> str:
    """A stored-hash lookalike no password matches: unknown users cost the same scrypt run as known ones."""
    return f"{os.urandom(16).hex()}${os.urandom(32).hex()}"


_CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# The byte triples SHA-512-crypt encodes, in its order (Drepper, "Unix crypt using SHA-256 and SHA-512").
_SHA512_CRYPT_ORDER = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
    (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13),
    (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19), (62, 20, 41),
)  # fmt: skip


def _crypt_b64(b2: int, b1: int, b0: int, chars: int) -> str:
    word = (b2 << 16) | (b1 << 8) | b0
    return "".join(_CRYPT_ALPHABET[(word >> (6 * i)) & 0x3F] for i in range(chars))


def _repeat(block: bytes, length: int) -> bytes:
    return (block * (length // len(block) + 1))[:length]


def sha512_crypt(password: str, salt: str | None = None, rounds: int = SHA512_CRYPT_ROUNDS) -> str:
    """`$6$salt$hash`, as crypt(3) writes it; nginx's auth_basic checks it with the system crypt.

    Written out rather than taken from the `crypt` module, which Python 3.13 removed.
    """
    if salt is None:
        salt = "".join(secrets.choice(_CRYPT_ALPHABET) for _ in range(16))
    pw, salt_bytes = password.encode(), salt.encode()[:16]
    b = hashlib.sha512(pw + salt_bytes + pw).digest()
    a = hashlib.sha512(pw + salt_bytes + _repeat(b, len(pw)))
    length = len(pw)
    while length:
        a.update(b if length & 1 else pw)
        length >>= 1
    digest = a.digest()
    p = _repeat(hashlib.sha512(pw * len(pw)).digest(), len(pw))
    s = _repeat(hashlib.sha512(salt_bytes * (16 + digest[0])).digest(), len(salt_bytes))
    for i in range(rounds):
        c = hashlib.sha512(p if i & 1 else digest)
        if i % 3:
            c.update(s)
        if i % 7:
            c.update(p)
        c.update(digest if i & 1 else p)
        digest = c.digest()
    encoded = "".join(_crypt_b64(digest[x], digest[y], digest[z], 4) for x, y, z in _SHA512_CRYPT_ORDER)
    encoded += _crypt_b64(0, 0, digest[63], 2)
    prefix = "$6$" if rounds == SHA512_CRYPT_ROUNDS else f"$6$rounds={rounds}$"
    return f"{prefix}{salt_bytes.decode()}${encoded}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _write_private(path: Path, text: str, mode: int = 0o600, group: int | None = None) -> None:
    """Writes `text` to `path` atomically with exactly `mode` (and `group`), whatever the umask or a stale temporary."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        if group is not None:
            os.fchown(fd, -1, group)
        os.fchmod(fd, mode)
        f.write(text)
    os.replace(tmp, path)


def _operator_group(path: Path) -> int | None:
    """The group an operator let read `path` (mode 0640), so that nginx's workers keep reading it after a rewrite."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    readable_by_group_only = st.st_mode & (stat.S_IRGRP | stat.S_IROTH) == stat.S_IRGRP
    return st.st_gid if readable_by_group_only else None


@dataclass
class AccountStore:
    """The accounts file of a site home."""

    keys_dir: Path

    @property
    def path(self) -> Path:
        return self.keys_dir / USERS_FILE

    @property
    def htpasswd_path(self) -> Path:
        return self.keys_dir / HTPASSWD_FILE

    def load(self) -> dict[str, Account]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{self.path}: not valid JSON ({exc})") from exc
        # Fields of older versions (the SHA-1 `password_ssha`) are dropped: the next save forgets them.
        return {
            name: Account(name=name, **{k: v for k, v in a.items() if k in ACCOUNT_FIELDS}) for name, a in raw.items()
        }

    def save(self, accounts: dict[str, Account]) -> None:
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        _write_private(self.path, json.dumps({name: asdict(a) for name, a in sorted(accounts.items())}, indent=2))
        if self.htpasswd_path.exists():
            # nginx already reads it: a removed user or a new password takes effect there too.
            self.write_htpasswd(accounts)

    def write_htpasswd(self, accounts: dict[str, Account]) -> Path:
        """nginx's `auth_basic_user_file`: the accounts that have a SHA-512-crypt password."""
        path = self.htpasswd_path
        lines = [f"{a.name}:{a.password_crypt}\n" for a in accounts.values() if a.password_crypt]
        group = _operator_group(path)
        try:
            _write_private(path, "".join(lines), 0o640 if group is not None else 0o600, group)
        except PermissionError as exc:
            raise ConfigError(
                f"{path}: cannot rewrite it with its group {group} ({exc.strerror})",
                hint="run as the file's owner or as root",
            ) from None
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
        account.password_crypt = sha512_crypt(password)
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


class TooManyFailures(Exception):
    """A client address spent its failed logins; it may try again after `retry_after_s`."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed logins; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass
class FailedLogins:
    """A token bucket of login attempts per client address.

    An attempt that needs a password check takes a token before hashing and
    gives it back when it succeeds, so concurrent attempts cannot overdraw
    the bucket; a token comes back every `refill_s`. An empty bucket is
    refused before any hashing.
    """

    burst: int = 10
    refill_s: float = 6.0
    max_clients: int = 10_000
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # address -> (tokens, as of)

    def _tokens(self, client: str, now: float) -> float:
        tokens, as_of = self._buckets.get(client, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - as_of) / self.refill_s)

    def take(self, client: str, now: float) -> float:
        """Takes one attempt: 0 when granted, else the seconds until the next one would be."""
        tokens = self._tokens(client, now)
        if tokens < 1:
            return (1 - tokens) * self.refill_s
        if client not in self._buckets and len(self._buckets) >= self.max_clients:
            self._forget_full(now)
        self._buckets[client] = (tokens - 1, now)
        return 0.0

    def give_back(self, client: str, now: float) -> None:
        """The attempt succeeded: it does not count as a failure."""
        tokens = self._tokens(client, now) + 1
        if tokens >= self.burst:
            self._buckets.pop(client, None)
        else:
            self._buckets[client] = (tokens, now)

    def _forget_full(self, now: float) -> None:
        for client in [c for c in self._buckets if self._tokens(c, now) >= self.burst]:
            del self._buckets[client]
        if len(self._buckets) >= self.max_clients:
            self._buckets.clear()  # more addresses failing at once than we track: forget rather than grow


def _login_executor() -> Executor:
    # Its own threads: scrypt (16 MiB and tens of ms each) must not queue up aiohttp's file operations.
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="reservoir-login")


@dataclass
class Authenticator:
    """Checks Authorization headers; caches successes briefly since scrypt is slow by design."""

    store: AccountStore
    mode: AuthMode
    cache_s: float = 60.0
    failures: FailedLogins = field(default_factory=FailedLogins)
    executor: Executor = field(default_factory=_login_executor)
    _accounts: dict[str, Account] = field(default_factory=dict, init=False)
    _mtime: float = field(default=-1.0, init=False)
    _verified: dict[str, tuple[float, Account]] = field(default_factory=dict, init=False)
    _dummy: str = field(default_factory=dummy_scrypt_hash, init=False)

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

    def cached(self, header: str | None) -> Account | None:
        """The account a header was recently verified for, without hashing anything (the fast path's check)."""
        if not header:
            return None
        self._refresh()
        hit = self._verified.get(_cache_key(header))
        if hit is None or hit[0] <= time.monotonic():
            return None
        return hit[1]

    async def verify(self, header: str | None, client: str) -> Account | None:
        """The account an Authorization header proves, or None: one check, in a thread.

        Raises TooManyFailures, without checking, when `client` has spent its failed attempts.
        """
        if not header:
            return None
        hit = self.cached(header)
        if hit is not None:
            return hit
        wait = self.failures.take(client, time.monotonic())
        if wait > 0:
            raise TooManyFailures(math.ceil(wait))
        accounts, mtime = self._accounts, self._mtime
        loop = asyncio.get_running_loop()
        account = await loop.run_in_executor(self.executor, check_header, header, accounts, self.mode, self._dummy)
        if account is None:
            return None
        self.failures.give_back(client, time.monotonic())
        if mtime == self._mtime:  # else the accounts changed while hashing: do not cache what may be revoked
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[_cache_key(header)] = (time.monotonic() + self.cache_s, account)
        return account


def _cache_key(header: str) -> str:
    return hashlib.sha256(header.encode()).hexdigest()


def check_header(header: str, accounts: dict[str, Account], mode: AuthMode, dummy: str) -> Account | None:
    """The account `header` proves among `accounts` (blocking: at most one scrypt run).

    A basic-auth password is hashed exactly once whether or not the user
    exists or has a password, against `dummy` when it has none.
    """
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return _by_token(value.strip(), accounts)
    if scheme != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    if user == TOKEN_USER or mode == "token":
        return _by_token(password, accounts)
    account = accounts.get(user)
    stored = account.password_scrypt if account is not None and account.password_scrypt else dummy
    if check_password(password, stored) and stored is not dummy:
        return account
    # A known user may send a token as the password.
    return _by_token(password, accounts) if account is not None else None


def _by_token(token: str, accounts: dict[str, Account]) -> Account | None:
    digest = token_hash(token)
    for account in accounts.values():
        if any(hmac.compare_digest(digest, h) for h in account.token_sha256):
            return account
    return None


def auth_mode(value: object) -> AuthMode:
    if value is None:
        return "none"
    if value not in AUTH_MODES:
        raise ConfigError(f"[server] auth must be one of {', '.join(AUTH_MODES)}, not {value!r}")
    return value  # type: ignore[return-value]
