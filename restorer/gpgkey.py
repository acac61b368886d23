"""The site's OpenPGP signing key, for the repositories whose clients check OpenPGP (APT).

It lives in ``keys/gnupg/`` (a GNUPGHOME, mode 0700): one ed25519 key, no
passphrase, created with the real gpg by ``init --role site`` (the
``reservoir.init`` hook ``site_init``) and, for a site made before that, on
its first APT publish. Signatures are made by gpg itself with SHA512 (the
clearsigned ``InRelease`` and the detached ``Release.gpg``), so what apt's
gpgv checks is exactly what gpg wrote.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reservoir.errors import ReservoirError

GNUPG_DIR = "gnupg"
GPG_TIMEOUT_S = 60
KEY_ALGO = "ed25519"
DIGEST = "SHA512"


class SigningError(ReservoirError):
    """gpg could not make or use the site's key."""


@dataclass(frozen=True)
class SiteKey:
    home: Path  # the GNUPGHOME
    fingerprint: str

    def _gpg(self, *args: str, data: bytes | None = None) -> bytes:
        return run_gpg(self.home, *args, data=data)

    def clearsign(self, text: bytes) -> bytes:
        """`InRelease`: the text with its signature around it."""
        return self._gpg("--local-user", self.fingerprint, "--digest-algo", DIGEST, "--clearsign", data=text)

    def detach_sign(self, text: bytes) -> bytes:
        """`Release.gpg`: an armored detached signature of the text."""
        return self._gpg("--local-user", self.fingerprint, "--digest-algo", DIGEST, "--armor", "--detach-sign",
                         data=text)

    def public_binary(self) -> bytes:
        """The public key as apt's `signed-by=` file wants it (a binary keyring, `.gpg`)."""
        return self._gpg("--export", self.fingerprint)

    def public_armored(self) -> bytes:
        return self._gpg("--armor", "--export", self.fingerprint)


def run_gpg(home: Path, *args: str, data: bytes | None = None) -> bytes:
    if shutil.which("gpg") is None:
        raise SigningError("gpg is not installed; the site signs its APT repositories with it",
                           hint="install the gnupg package (scripts/system-packages.txt)")
    try:
        done = subprocess.run(
            ["gpg", "--homedir", str(home), "--batch", "--yes", "--no-tty", "--pinentry-mode", "loopback",
             "--passphrase", "", *args],
            input=data, capture_output=True, timeout=GPG_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        raise SigningError(f"gpg in {home} did not answer within {GPG_TIMEOUT_S} s",
                           hint="check that gpg-agent can start (a socket path under 100 characters)") from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise SigningError(f"gpg {args[-1] if args else ''} failed in {home}: {reason[-1] if reason else 'no message'}",
                           hint="check the site's keys/gnupg folder (mode 0700, owned by this user)")
    return done.stdout


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    fd = os.open(folder / ".site-key.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fingerprint(home: Path) -> str | None:
    listing = run_gpg(home, "--with-colons", "--list-secret-keys").decode()
    for line in listing.splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]
    return None


def site_key(keys_dir: Path, name: str = "Reservoir site") -> SiteKey:
    """The site's key, created now if it has none (two publishers at once make one key)."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    home = keys_dir / GNUPG_DIR
    with _locked(keys_dir):
        home.mkdir(mode=0o700, exist_ok=True)
        home.chmod(0o700)
        fingerprint = _fingerprint(home)
        if fingerprint is None:
            run_gpg(home, "--quick-gen-key", f"{name} <apt-signing@reservoir.invalid>", KEY_ALGO, "sign", "never")
            fingerprint = _fingerprint(home)
        if fingerprint is None:
            raise SigningError(f"gpg made no key in {home}", hint="run gpg --homedir that folder --list-secret-keys")
    return SiteKey(home, fingerprint)


def site_init(home: object, role: str) -> str | None:
    """The `reservoir.init` hook: a new site gets its signing key at once."""
    if role != "site":
        return None
    keys_dir = getattr(home, "keys_dir")
    key = site_key(keys_dir)
    # The agent that made the key would outlive `init`; the first publish starts its own.
    stop_agent(key.home)
    return f"site OpenPGP key {key.fingerprint[-16:]} written to {key.home}"


def stop_agent(home: Path) -> None:
    """Stop the gpg-agent a GNUPGHOME started (tests; a site leaves it running)."""
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True,
                   timeout=GPG_TIMEOUT_S, check=False)
