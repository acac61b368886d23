"""The site mirror, preconfigured inside every session: pip, uv, apt and R point at the site with no flags.

Everything here is text computed from a `Mirror`; the service writes the files into a
per-session folder that the container mounts read-only at ``/etc/reservoir``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

CONFIG_MOUNT = "/etc/reservoir"
APT_SOURCES_TARGET = "/etc/apt/sources.list.d/reservoir.sources"
APT_KEY_NAME = "site-archive-key.asc"


@dataclass(frozen=True)
class AptSource:
    channel: str
    suites: tuple[str, ...]
    components: tuple[str, ...] = ("main",)


@dataclass(frozen=True)
class Mirror:
    url: str  # the site as the container reaches it, e.g. http://10.0.0.5:8080
    username: str = ""  # with `secret`, sent as basic auth when the site requires authentication
    secret: str = ""  # a token (username "__token__") or the user's password
    apt: tuple[AptSource, ...] = ()
    apt_key: str = ""  # the site's archive signing key (ASCII armour), when it signs its APT trees

    def _with_credentials(self, path: str) -> str:
        parts = urlsplit(self.url.rstrip("/") + path)
        if not self.secret:
            return urlunsplit(parts)
        netloc = f"{quote(self.username or '__token__', safe='')}:{quote(self.secret, safe='')}@{parts.netloc}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    @property
    def pypi_index(self) -> str:
        return self._with_credentials("/pypi/simple/")

    @property
    def cran(self) -> str:
        return self._with_credentials("/cran/")


def pip_conf(mirror: Mirror) -> str:
    # break-system-packages: Debian-based images mark their Python externally managed (PEP 668),
    # which would refuse even `pip install --user`; a session's user site is its own overlay.
    return (
        "[global]\n"
        f"index-url = {mirror.pypi_index}\n"
        "break-system-packages = true\n"
        "disable-pip-version-check = true\n"
    )


def rprofile(mirror: Mirror) -> str:
    return f'local({{ options(repos = c(site = "{mirror.cran}")) }})\n'


def apt_sources(mirror: Mirror) -> str:
    """deb822 stanzas, one per APT channel the site publishes; empty when it publishes none."""
    stanzas = []
    for source in mirror.apt:
        lines = [
            "Types: deb",
            f"URIs: {mirror._with_credentials(f'/apt/{source.channel}/')}",
            f"Suites: {' '.join(source.suites)}",
            f"Components: {' '.join(source.components)}",
        ]
        if mirror.apt_key:
            lines.append(f"Signed-By: {CONFIG_MOUNT}/{APT_KEY_NAME}")
        stanzas.append("\n".join(lines) + "\n")
    return "\n".join(stanzas)


def config_files(mirror: Mirror) -> dict[str, str]:
    """File name (relative to the session's config folder) -> content."""
    files = {"pip.conf": pip_conf(mirror), "Rprofile": rprofile(mirror)}
    sources = apt_sources(mirror)
    if sources:
        files["reservoir.sources"] = sources
        if mirror.apt_key:
            files[APT_KEY_NAME] = mirror.apt_key
    return files


def mirror_env(mirror: Mirror) -> dict[str, str]:
    return {
        "PIP_CONFIG_FILE": f"{CONFIG_MOUNT}/pip.conf",
        "PIP_INDEX_URL": mirror.pypi_index,
        "PIP_BREAK_SYSTEM_PACKAGES": "1",
        "UV_INDEX_URL": mirror.pypi_index,
        "UV_DEFAULT_INDEX": mirror.pypi_index,
        "R_PROFILE_USER": f"{CONFIG_MOUNT}/Rprofile",
    }
