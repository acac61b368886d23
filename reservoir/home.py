"""The Reservoir home directory: where one hub or one site keeps everything.

Layout (all relative to the home root)::

    reservoir.toml   configuration
    reservoir.db     SQLite database (unless RESERVOIR_DB_URL points elsewhere)
    blobs/           content-addressed package files (see reservoir.blobs)
    trees/           published repository trees, swapped atomically
    keys/            the hub's signing key, or the site's trusted hub keys
    inbox/           the site's watched folder for incoming bundles
    outbox/          where a hub's scheduled exports are written
    logs/            log files of daemons
    tmp/             scratch space on the same filesystem as blobs/ and trees/
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import tomli_w

from reservoir.errors import ConfigError, NotInitialized

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Role = Literal["hub", "site"]
ROLES: tuple[Role, ...] = ("hub", "site")
CONFIG_NAME = "reservoir.toml"
HOME_ENV = "RESERVOIR_HOME"
DB_URL_ENV = "RESERVOIR_DB_URL"


def default_home() -> Path:
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".reservoir"


@dataclass
class Home:
    """A home directory and its parsed configuration."""

    root: Path
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs"

    @property
    def trees_dir(self) -> Path:
        return self.root / "trees"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def inbox_dir(self) -> Path:
        return self.root / "inbox"

    @property
    def outbox_dir(self) -> Path:
        return self.root / "outbox"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def role(self) -> Role:
        role = self.config.get("reservoir", {}).get("role")
        if role not in ROLES:
            raise ConfigError(f"{self.config_path}: [reservoir] role must be one of {', '.join(ROLES)}, not {role!r}")
        return role

    @property
    def instance_id(self) -> str:
        """A stable id for this hub or site; a hub's id is written into its bundles."""
        return str(self.config.get("reservoir", {}).get("id", ""))

    @property
    def db_url(self) -> str:
        env = os.environ.get(DB_URL_ENV)
        if env:
            return env
        configured = self.config.get("database", {}).get("url")
        if configured:
            return str(configured)
        return f"sqlite:///{self.root / 'reservoir.db'}"

    def section(self, name: str) -> dict[str, Any]:
        """A top-level table of reservoir.toml, empty when absent."""
        value = self.config.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{self.config_path}: [{name}] must be a table")
        return value

    def require_role(self, role: Role) -> None:
        if self.role != role:
            raise ConfigError(
                f"{self.root}: a {self.role} home, but this command runs on a {role}",
                hint=f"pass --home pointing at a {role} home",
            )

    def save_config(self) -> None:
        tmp = self.config_path.with_suffix(".toml.tmp")
        tmp.write_text(tomli_w.dumps(self.config))
        os.replace(tmp, self.config_path)

    def ensure_dirs(self) -> None:
        for d in (self.blobs_dir, self.trees_dir, self.keys_dir, self.logs_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        if self.config.get("reservoir", {}).get("role") == "site":
            self.inbox_dir.mkdir(parents=True, exist_ok=True)
        else:
            self.outbox_dir.mkdir(parents=True, exist_ok=True)


def load_home(root: Path) -> Home:
    """Read an initialised home; a clear error when it is not one."""
    config_path = root / CONFIG_NAME
    if not config_path.is_file():
        raise NotInitialized(
            f"{root}: not a Reservoir home (no {CONFIG_NAME})",
            hint="run `reservoir --home DIR init --role hub|site` first",
        )
    try:
        config = tomllib.loads(config_path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: invalid TOML: {exc}") from exc
    return Home(root=root, config=config)


def create_home(root: Path, role: Role) -> Home:
    """Create the directory layout and a fresh reservoir.toml; refuses to overwrite."""
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if (root / CONFIG_NAME).exists():
        raise ConfigError(f"{root}: already a Reservoir home", hint="choose another --home or remove it")
    root.mkdir(parents=True, exist_ok=True)
    home = Home(
        root=root,
        config={
            "reservoir": {
                "role": role,
                "id": str(uuid.uuid4()),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        },
    )
    home.ensure_dirs()
    home.save_config()
    return home
