"""A suite's `InRelease` (or `Release` + `Release.gpg`): verified with gpgv, then read.

Nothing of a Release is read before gpgv has checked its signature against
the channel's keyrings, and what is read is gpgv's own output (the signed
text), never our reading of the file around it. Signatures count as apt
counts them: a good signature by a key in the keyrings, none bad, none by an
expired or revoked key. The Release then says which `Packages` file to fetch
(by hash when it offers that, `.xz` before `.gz` before plain) and what its
sha256 and size must be; the index is checked against both before it is
decompressed, and its decompressed form against the plain entry too.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import re
import subprocess
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

from reservoir.errors import ConfigError, IntegrityError

ARMOR_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
CLEARSIGN_BEGIN = b"-----BEGIN PGP SIGNED MESSAGE-----"
SIGNATURE_BEGIN = b"-----BEGIN PGP SIGNATURE-----"
GPG_TIMEOUT_S = 60
# Compressions apt reads, in the order we prefer them (smallest download first).
COMPRESSIONS = ((".xz", "xz"), (".gz", "gz"), ("", "plain"))
# An index larger than this once decompressed is refused rather than read into memory.
MAX_INDEX_BYTES = 2 << 30
_SUM_LINE_RE = re.compile(r"^([0-9a-f]{64})\s+([0-9]+)\s+(\S+)$")
_SAFE_PATH_RE = re.compile(r"^[A-Za-z0-9+_.~@-]+(?:/[A-Za-z0-9+_.~@-]+)*$")


class SignatureError(IntegrityError):
    """A Release whose signature gpgv does not accept; nothing of it is used."""


# ------------------------------------------------------------------ keyrings


def is_armored(keyring: str) -> bool:
    return keyring.lstrip().startswith(ARMOR_BEGIN)


def _dearmor(armored: bytes, out: Path, scratch: Path, what: str) -> None:
    try:
        subprocess.run(["gpg", "--homedir", str(scratch), "--batch", "--quiet", "--yes", "--dearmor",
                        "--output", str(out)], input=armored, capture_output=True, check=True, timeout=GPG_TIMEOUT_S)
    except FileNotFoundError:
        raise ConfigError("gpg is not installed", hint="install gnupg (scripts/system-packages.txt)") from None
    except subprocess.CalledProcessError as exc:
        cause = exc.stderr.decode(errors="replace").strip().splitlines()
        raise ConfigError(f"{what}: not an OpenPGP key ({cause[-1] if cause else 'gpg --dearmor failed'})",
                          hint="give a binary keyring (.gpg) or an armored public key (.asc)") from None


def prepare_keyrings(keyrings: Sequence[str], scratch: Path) -> list[Path]:
    """gpgv-readable keyring files for `keyrings` (paths, or armored key blocks inline), under `scratch`.

    gpgv reads only binary keyrings; an armored one (an `.asc` file, or a
    deb822 `Signed-By:` key block) is dearmored into `scratch` first.
    """
    if not keyrings:
        raise ConfigError("no keyring to check the upstream's signature with",
                          hint="pass --keyring FILE, or add Signed-By to the host's apt source")
    ready: list[Path] = []
    home = scratch / "gnupg"
    home.mkdir(mode=0o700, exist_ok=True)
    for i, keyring in enumerate(keyrings):
        if is_armored(keyring):
            out = scratch / f"inline-{i}.gpg"
            _dearmor(keyring.encode(), out, home, "inline Signed-By key")
            ready.append(out)
            continue
        path = Path(keyring).expanduser().absolute()
        try:
            head = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{keyring}: cannot read keyring: {exc.strerror}",
                              hint="pass --keyring with the archive's public key") from None
        if head.lstrip().startswith(ARMOR_BEGIN.encode()):
            out = scratch / f"keyring-{i}.gpg"
            _dearmor(head, out, home, keyring)
            ready.append(out)
        else:
            ready.append(path)
    return ready


# ------------------------------------------------------------------ signatures


@dataclass(frozen=True)
class Verified:
    text: bytes  # the signed content, as gpgv gave it
    signer: str  # the fingerprint of the key that made the good signature


def _gpgv(args: list[str], keyrings: Sequence[Path], scratch: Path, what: str) -> tuple[int, bytes, list[str]]:
    home = scratch / "gnupg"
    home.mkdir(mode=0o700, exist_ok=True)
    command = ["gpgv", "--homedir", str(home), "--status-fd", "2"]
    for keyring in keyrings:
        command += ["--keyring", str(keyring)]
    try:
        done = subprocess.run(command + args, capture_output=True, timeout=GPG_TIMEOUT_S)
    except FileNotFoundError:
        raise ConfigError("gpgv is not installed", hint="install gpgv (scripts/system-packages.txt)") from None
    except subprocess.TimeoutExpired:
        raise SignatureError(f"{what}: gpgv did not answer within {GPG_TIMEOUT_S} s") from None
    status = [line[len("[GNUPG:] "):] for line in done.stderr.decode(errors="replace").splitlines()
              if line.startswith("[GNUPG:] ")]
    return done.returncode, done.stdout, status


def _judge(returncode: int, status: list[str], what: str) -> str:
    """The signer's fingerprint when the status says apt would accept the signature; raises otherwise."""
    words = [line.split() for line in status if line.strip()]
    kinds = {w[0] for w in words}
    for bad, reason in (("BADSIG", "bad signature (the file was changed after it was signed)"),
                        ("EXPKEYSIG", "signed by an expired key"), ("REVKEYSIG", "signed by a revoked key"),
                        ("EXPSIG", "the signature has expired")):
        if bad in kinds:
            raise SignatureError(f"{what}: {reason}", hint="the upstream or the way to it is not trustworthy; "
                                 "nothing was used")
    missing = [w[1] for w in words if w[0] == "NO_PUBKEY" and len(w) > 1]
    if missing or ("ERRSIG" in kinds and "GOODSIG" not in kinds):
        key = missing[0] if missing else "?"
        raise SignatureError(f"{what}: signed by key {key}, which is not in the channel's keyrings",
                             hint="pass --keyring with the archive's public key if you trust it")
    valid = [w[1] for w in words if w[0] == "VALIDSIG" and len(w) > 1]
    if returncode != 0 or "GOODSIG" not in kinds or not valid:
        raise SignatureError(f"{what}: no valid signature", hint="the upstream must sign its Release files")
    return valid[0]


def verify_inrelease(data: bytes, keyrings: Sequence[Path], scratch: Path, what: str = "InRelease") -> Verified:
    """The signed text of a clearsigned InRelease, once gpgv accepts it."""
    if not data.startswith(CLEARSIGN_BEGIN) or data.count(CLEARSIGN_BEGIN) != 1 or data.count(SIGNATURE_BEGIN) != 1:
        raise SignatureError(f"{what}: not one clearsigned message", hint="the upstream's InRelease is malformed")
    with tempfile.TemporaryDirectory(dir=scratch, prefix="inrelease-") as tmp:
        path = Path(tmp) / "InRelease"
        path.write_bytes(data)
        returncode, out, status = _gpgv(["--output", "-", str(path)], keyrings, Path(tmp), what)
    signer = _judge(returncode, status, what)
    return Verified(out, signer)


def verify_detached(release: bytes, signature: bytes, keyrings: Sequence[Path], scratch: Path,
                    what: str = "Release") -> Verified:
    """`release` itself, once gpgv accepts `signature` (Release.gpg) for it."""
    with tempfile.TemporaryDirectory(dir=scratch, prefix="release-") as tmp:
        data_path, sig_path = Path(tmp) / "Release", Path(tmp) / "Release.gpg"
        data_path.write_bytes(release)
        sig_path.write_bytes(signature)
        returncode, _out, status = _gpgv([str(sig_path), str(data_path)], keyrings, Path(tmp), what)
    signer = _judge(returncode, status, what)
    return Verified(release, signer)


# ------------------------------------------------------------------ Release fields


@dataclass(frozen=True)
class IndexEntry:
    path: str  # relative to dists/<suite>/
    sha256: str
    size: int


@dataclass(frozen=True)
class Release:
    suite: str
    codename: str
    date: datetime | None
    valid_until: datetime | None
    architectures: tuple[str, ...]
    components: tuple[str, ...]
    acquire_by_hash: bool
    files: dict[str, IndexEntry] = field(default_factory=dict)  # by path
    fields: dict[str, str] = field(default_factory=dict)


def _release_error(what: str, reason: str) -> IntegrityError:
    return IntegrityError(f"{what}: {reason}", hint="the upstream's Release is malformed; nothing was used")


def _parse_date(value: str, what: str, name: str) -> datetime:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        raise _release_error(what, f"{name} is not a date: {value[:60]!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def parse_release(text: bytes, what: str = "Release") -> Release:
    """The fields of a (verified) Release file; strict: one paragraph, well-formed SHA256 lines."""
    try:
        lines = text.decode("utf-8").strip("\n").split("\n")
    except UnicodeDecodeError:
        raise _release_error(what, "not UTF-8") from None
    fields: dict[str, str] = {}
    key = ""
    for line in lines:
        if not line.strip():
            raise _release_error(what, "more than one paragraph")
        if line[0] in " \t":
            if not key:
                raise _release_error(what, "continuation line before any field")
            fields[key] += "\n" + line.strip()
            continue
        key, sep, value = line.partition(":")
        if not sep or not key or " " in key:
            raise _release_error(what, f"not a field: {line[:80]!r}")
        if key in fields:
            raise _release_error(what, f"field {key} given twice")
        fields[key] = value.strip()
    files: dict[str, IndexEntry] = {}
    for line in fields.get("SHA256", "").split("\n"):
        if not line.strip():
            continue
        match = _SUM_LINE_RE.match(line.strip())
        if match is None:
            raise _release_error(what, f"bad SHA256 line: {line.strip()[:100]!r}")
        path = match[3]
        if not _SAFE_PATH_RE.match(path) or any(p in (".", "..") for p in path.split("/")):
            raise _release_error(what, f"unsafe path in SHA256: {path[:100]!r}")
        files[path] = IndexEntry(path, match[1], int(match[2]))
    if not files:
        raise _release_error(what, "no SHA256 file list (apt needs one)")
    return Release(
        suite=fields.get("Suite", ""),
        codename=fields.get("Codename", ""),
        date=_parse_date(fields["Date"], what, "Date") if "Date" in fields else None,
        valid_until=_parse_date(fields["Valid-Until"], what, "Valid-Until") if "Valid-Until" in fields else None,
        architectures=tuple(fields.get("Architectures", "").split()),
        components=tuple(fields.get("Components", "").split()),
        acquire_by_hash=fields.get("Acquire-By-Hash", "").strip().lower() == "yes",
        files=files,
        fields={k: v for k, v in fields.items() if k not in ("SHA256", "SHA1", "MD5Sum")},
    )


def check_release(release: Release, suite: str, now: datetime, allow_expired: bool = False,
                  what: str = "Release") -> None:
    """Refuse a Release for another suite (a replay) or past its Valid-Until (a freeze attack)."""
    if suite not in (release.suite, release.codename):
        raise IntegrityError(f"{what}: is for suite {release.suite or release.codename!r}, not {suite!r}",
                             hint="the upstream answered with another suite's Release; nothing was used")
    if release.valid_until is not None and release.valid_until < now and not allow_expired:
        raise IntegrityError(f"{what}: expired on {release.valid_until.isoformat()} (Valid-Until)",
                             hint="the upstream or a cache in between serves stale metadata; try later")


# ------------------------------------------------------------------ the Packages index


@dataclass(frozen=True)
class IndexChoice:
    entry: IndexEntry  # the file as the Release lists it (path, sha256, size)
    fetch_path: str  # what to ask for, relative to dists/<suite>/ (a by-hash path when offered)
    compression: str  # "xz", "gz" or "plain"
    plain: IndexEntry | None  # the uncompressed index's entry, to check the decompressed bytes against


def choose_index(release: Release, component: str, arch: str, what: str = "Release") -> IndexChoice:
    """The `Packages` file to fetch for `component` and `arch`."""
    if release.components and component not in release.components:
        raise ConfigError(f"{what}: no component {component!r} (has: {' '.join(release.components)})",
                          hint="pick a --component the suite has")
    if release.architectures and arch not in release.architectures:
        raise ConfigError(f"{what}: no architecture {arch!r} (has: {' '.join(release.architectures)})",
                          hint="pick an --arch the suite has")
    base = f"{component}/binary-{arch}/Packages"
    plain = release.files.get(base)
    for suffix, compression in COMPRESSIONS:
        entry = release.files.get(base + suffix)
        if entry is None:
            continue
        fetch = (f"{component}/binary-{arch}/by-hash/SHA256/{entry.sha256}" if release.acquire_by_hash
                 else entry.path)
        return IndexChoice(entry, fetch, compression, plain)
    raise IntegrityError(f"{what}: lists no {base} index (plain, .gz or .xz)",
                         hint="the suite does not carry that component and architecture")


def _decompress(data: bytes, compression: str, limit: int, what: str) -> bytes:
    try:
        if compression == "xz":
            decompressor = lzma.LZMADecompressor()
            out = decompressor.decompress(data, max_length=limit + 1)
            if not decompressor.eof and len(out) <= limit:
                raise IntegrityError(f"{what}: truncated xz data")
        elif compression == "gz":
            gz = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = gz.decompress(data, limit + 1)
            if not gz.eof and len(out) <= limit:
                raise IntegrityError(f"{what}: truncated gzip data")
        else:
            out = data
    except (lzma.LZMAError, zlib.error, gzip.BadGzipFile, EOFError) as exc:
        raise IntegrityError(f"{what}: cannot decompress ({exc})") from None
    if len(out) > limit:
        raise IntegrityError(f"{what}: larger than {limit} bytes once decompressed",
                             hint="the index does not match its Release entry")
    return out


def open_index(data: bytes, choice: IndexChoice, what: str = "Packages") -> bytes:
    """The decompressed index, once its bytes match the Release's sha256 and size."""
    entry = choice.entry
    if len(data) != entry.size:
        raise IntegrityError(f"{what}: {len(data)} bytes where the Release says {entry.size}",
                             hint="the upstream changed while syncing, or the way to it is not trustworthy; "
                                  "nothing was used")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise IntegrityError(f"{what}: sha256 {digest} where the Release says {entry.sha256}",
                             hint="the upstream changed while syncing, or the way to it is not trustworthy; "
                                  "nothing was used")
    limit = choice.plain.size if choice.plain is not None else MAX_INDEX_BYTES
    out = _decompress(data, choice.compression, limit, what)
    if choice.plain is not None and choice.compression != "plain":
        if len(out) != choice.plain.size or hashlib.sha256(out).hexdigest() != choice.plain.sha256:
            raise IntegrityError(f"{what}: decompressed index does not match the Release's entry for "
                                 f"{choice.plain.path}", hint="the upstream's index is corrupt; nothing was used")
    return out
