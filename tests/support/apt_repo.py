"""A signed upstream APT repository for tests, written as an archive's tools write it.

    key = make_key(tmp / "key")                       # real gpg, throwaway GNUPGHOME
    repo = write_repo(tmp / "repo", {"stable": debs, "stable-updates": newer}, key)
    # repo.root/dists/stable/{InRelease,Release,Release.gpg}
    #           dists/stable/main/binary-amd64/{Packages,Packages.gz,Packages.xz,by-hash/SHA256/...}
    #           pool/main/<prefix>/<source>/<file>.deb

Serve `repo.root` over HTTP on 127.0.0.1 (or use its file:// URL) and give
`key.public` (binary) or `key.armored` (.asc) as the keyring. To break it
for a test, edit a file and call `sign_suite` again (or not). Call
`key.close()` (or use `make_key` as a context via `closing`) to stop the
gpg-agent the key's GNUPGHOME started.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

GPG_TIMEOUT_S = 60


@dataclass
class ArchiveKey:
    home: Path  # the GNUPGHOME holding the secret key
    fingerprint: str
    public: Path  # binary keyring (what Signed-By usually names)
    armored: Path  # the same key, ASCII-armored (.asc)

    def gpg(self, *args: str, data: bytes | None = None) -> bytes:
        done = subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--yes", "--pinentry-mode",
                               "loopback", "--passphrase", "", *args], input=data, capture_output=True,
                              check=True, timeout=GPG_TIMEOUT_S)
        return done.stdout

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], capture_output=True,
                       timeout=GPG_TIMEOUT_S, check=False)
        shutil.rmtree(self.home, ignore_errors=True)


def make_key(out_dir: Path, name: str = "Reservoir Test Archive", expire: str = "never") -> ArchiveKey:
    """A fresh ed25519 signing key in its own GNUPGHOME; its public half exported under `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # gpg-agent's socket path must stay short: a home under /tmp, not deep in pytest's tree.
    home = Path(tempfile.mkdtemp(prefix="rsv-gpg-"))
    home.chmod(0o700)
    key = ArchiveKey(home, "", out_dir / "archive.gpg", out_dir / "archive.asc")
    key.gpg("--quick-gen-key", f"{name} <archive@example.invalid>", "ed25519", "sign", expire)
    listing = key.gpg("--with-colons", "--list-secret-keys").decode()
    key.fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    key.public.write_bytes(key.gpg("--export", key.fingerprint))
    key.armored.write_bytes(key.gpg("--armor", "--export", key.fingerprint))
    return key


@dataclass
class Suite:
    name: str
    codename: str
    debs: list[Path]
    component: str = "main"
    arch: str = "amd64"
    valid_until: datetime | None = None
    by_hash: bool = True
    date: datetime = field(default_factory=lambda: datetime.now(timezone.utc).replace(microsecond=0))


@dataclass
class Repo:
    root: Path
    suites: dict[str, Suite]

    @property
    def url(self) -> str:
        return self.root.as_uri() + "/"

    def dist(self, suite: str) -> Path:
        return self.root / "dists" / suite

    def packages(self, suite: str) -> Path:
        s = self.suites[suite]
        return self.dist(suite) / s.component / f"binary-{s.arch}" / "Packages"


@contextmanager
def archive_and_stranger(base: Path) -> Iterator[tuple[ArchiveKey, ArchiveKey]]:
    """The test archive's signing key and another one it does not trust; both closed after."""
    archive, stranger = make_key(base / "archive"), make_key(base / "stranger", "Someone Else")
    try:
        yield archive, stranger
    finally:
        archive.close()
        stranger.close()


def _pool_path(component: str, source: str, filename: str) -> str:
    prefix = source[:4] if source.startswith("lib") and len(source) > 3 else source[0]
    return f"pool/{component}/{prefix}/{source}/{filename}"


def stanza(deb: Path, pool_path: str) -> str:
    """The Packages stanza of a .deb, as dpkg-scanpackages writes it: its control fields, then the file's."""
    control = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, check=True,
                             timeout=GPG_TIMEOUT_S).stdout.decode().rstrip("\n")
    data = deb.read_bytes()
    return (f"{control}\nFilename: {pool_path}\nSize: {len(data)}\n"
            f"MD5sum: {hashlib.md5(data).hexdigest()}\nSHA256: {hashlib.sha256(data).hexdigest()}\n")


def _field(control: str, name: str) -> str:
    for line in control.splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    return ""


def write_packages(root: Path, suite: Suite) -> None:
    stanzas = []
    for deb in suite.debs:
        control = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, check=True,
                                 timeout=GPG_TIMEOUT_S).stdout.decode()
        source = _field(control, "Source").split(" ")[0] or _field(control, "Package")
        pool = _pool_path(suite.component, source, deb.name)
        (root / pool).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(deb, root / pool)
        stanzas.append(stanza(deb, pool))
    write_index(root, suite, "\n".join(stanzas).encode())


def write_index(root: Path, suite: Suite, text: bytes) -> None:
    """Packages, .gz and .xz (and their by-hash copies) of `suite` from `text`."""
    folder = root / "dists" / suite.name / suite.component / f"binary-{suite.arch}"
    folder.mkdir(parents=True, exist_ok=True)
    variants = {"Packages": text, "Packages.gz": gzip.compress(text, mtime=0), "Packages.xz": lzma.compress(text)}
    for name, data in variants.items():
        (folder / name).write_bytes(data)
        if suite.by_hash:
            by_hash = folder / "by-hash" / "SHA256"
            by_hash.mkdir(parents=True, exist_ok=True)
            (by_hash / hashlib.sha256(data).hexdigest()).write_bytes(data)


def release_text(root: Path, suite: Suite) -> str:
    dist = root / "dists" / suite.name
    files = sorted(p for p in dist.rglob("*") if p.is_file() and "by-hash" not in p.parts
                   and p.name not in ("Release", "InRelease", "Release.gpg"))
    lines = ["Origin: Reservoir Tests", "Label: Reservoir Tests", f"Suite: {suite.name}",
             f"Codename: {suite.codename}", f"Date: {format_datetime(suite.date, usegmt=True)}"]
    if suite.valid_until is not None:
        lines.append(f"Valid-Until: {format_datetime(suite.valid_until.astimezone(timezone.utc), usegmt=True)}")
    lines += [f"Architectures: {suite.arch}", f"Components: {suite.component}"]
    if suite.by_hash:
        lines.append("Acquire-By-Hash: yes")
    lines.append("Description: fixture archive")
    for title, algo in (("MD5Sum", hashlib.md5), ("SHA256", hashlib.sha256)):
        lines.append(f"{title}:")
        for path in files:
            data = path.read_bytes()
            lines.append(f" {algo(data).hexdigest()} {len(data):>8} {path.relative_to(dist).as_posix()}")
    return "\n".join(lines) + "\n"


def sign_suite(root: Path, suite: Suite, key: ArchiveKey) -> None:
    """(Re)write the suite's Release and sign it: InRelease (clearsigned) and Release.gpg (detached)."""
    dist = root / "dists" / suite.name
    release = release_text(root, suite).encode()
    (dist / "Release").write_bytes(release)
    (dist / "InRelease").write_bytes(key.gpg("--local-user", key.fingerprint, "--digest-algo", "SHA256",
                                             "--clearsign", data=release))
    (dist / "Release.gpg").write_bytes(key.gpg("--local-user", key.fingerprint, "--digest-algo", "SHA256",
                                               "--armor", "--detach-sign", data=release))


def write_repo(root: Path, suites: dict[str, list[Path]], key: ArchiveKey, *, codenames: dict[str, str] | None = None,
               valid_for: timedelta | None = None, by_hash: bool = True) -> Repo:
    """A repository with one component (`main`) and one architecture (`amd64`) per suite, signed by `key`."""
    made: dict[str, Suite] = {}
    for name, debs in suites.items():
        suite = Suite(name, (codenames or {}).get(name, name), list(debs), by_hash=by_hash)
        if valid_for is not None:
            suite.valid_until = suite.date + valid_for
        write_packages(root, suite)
        sign_suite(root, suite, key)
        made[name] = suite
    return Repo(root, made)
