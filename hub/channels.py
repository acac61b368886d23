"""Channels: what a hub mirrors from which upstream, for which targets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from downloader.pypi.options import PyPIOptions
from reservoir.errors import ConfigError, ReservoirError
from reservoir.models import Channel, Release, ReleaseState, SyncRun

KINDS = ("pypi",)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class UnknownChannel(ReservoirError):
    pass


def check_channel_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ConfigError(f"channel name {name!r} is not valid", hint="use letters, digits, '.', '_' and '-'")
    return name


def check_upstream(url: str) -> str:
    if not re.match(r"^(https?|file)://", url):
        raise ConfigError(f"--upstream {url!r} is not an http(s):// or file:// URL")
    return url.rstrip("/") + "/"


def _pip_config_index_url() -> str | None:
    """global.index-url from the host's pip configuration files, if set."""
    try:
        result = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                                timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("global.index-url", ":env:.index-url"):
            return value.strip().strip("'\"")
    return None


def _pip_builtin_index_url() -> str | None:
    try:
        # pip's own default, read from pip so no registry host is written here.
        from pip._internal.models.index import PyPI

        return str(PyPI.simple_url)
    except Exception:  # noqa: BLE001 - any pip internals change means "unknown"
        return None


def host_pip_index_url() -> str:
    """The index the host's pip installs from: PIP_INDEX_URL, pip config, pip's default."""
    url = os.environ.get("PIP_INDEX_URL") or _pip_config_index_url() or _pip_builtin_index_url()
    if not url:
        raise ConfigError("cannot tell which index the host's pip uses", hint="pass --upstream URL")
    return url


@dataclass(frozen=True)
class ChannelInfo:
    name: str
    kind: str
    upstream: str
    options: dict[str, Any]
    active_releases: int
    last_sync: str


def add_channel(session: Session, name: str, kind: str, upstream: str, options: PyPIOptions) -> Channel:
    check_channel_name(name)
    if kind not in KINDS:
        raise ConfigError(f"channel kind {kind!r} is not supported", hint=f"supported: {', '.join(KINDS)}")
    if session.scalar(select(Channel).where(Channel.name == name)) is not None:
        raise ConfigError(f"channel {name!r} already exists", hint="choose another name or `reservoir channel rm` it")
    channel = Channel(name=name, kind=kind, upstream=check_upstream(upstream), options=options.to_json())
    session.add(channel)
    session.flush()
    return channel


def get_channel(session: Session, name: str) -> Channel:
    channel = session.scalar(select(Channel).where(Channel.name == name))
    if channel is None:
        raise UnknownChannel(f"channel {name!r} does not exist", hint="see `reservoir channel ls`")
    return channel


def list_channels(session: Session) -> list[ChannelInfo]:
    counts = dict(
        session.execute(
            select(Release.channel_id, func.count()).where(Release.state == ReleaseState.ACTIVE).group_by(Release.channel_id)
        ).all()
    )
    last: dict[int, SyncRun] = {}
    for run in session.scalars(select(SyncRun).order_by(SyncRun.id)):
        last[run.channel_id] = run
    out = []
    for channel in session.scalars(select(Channel).order_by(Channel.name)):
        run = last.get(channel.id)
        when = f"{run.status} at {run.started_at:%Y-%m-%d %H:%M}" if run else "never"
        out.append(ChannelInfo(channel.name, channel.kind, channel.upstream, dict(channel.options),
                               counts.get(channel.id, 0), when))
    return out


def remove_channel(session: Session, name: str) -> None:
    """Forget a channel and its releases; the blobs stay (export decides)."""
    session.delete(get_channel(session, name))
