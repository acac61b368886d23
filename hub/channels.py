"""Channels: what a hub mirrors from which upstream, for which targets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from downloader.base import ChannelSetup, installed_kinds
from reservoir.errors import ConfigError, ReservoirError
from reservoir.models import Channel, Release, ReleaseState, SyncRun

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


@dataclass(frozen=True)
class ChannelInfo:
    name: str
    kind: str
    upstream: str
    options: dict[str, Any]
    active_releases: int
    last_sync: str


def add_channel(session: Session, name: str, kind: str, setup: ChannelSetup) -> Channel:
    """Record a channel whose options its ecosystem has checked (`Ecosystem.configure`)."""
    check_channel_name(name)
    kinds = installed_kinds()
    if kind not in kinds:
        raise ConfigError(f"channel kind {kind!r} is not supported", hint=f"supported: {', '.join(kinds)}")
    if session.scalar(select(Channel).where(Channel.name == name)) is not None:
        raise ConfigError(f"channel {name!r} already exists", hint="choose another name or `reservoir channel rm` it")
    channel = Channel(name=name, kind=kind, upstream=check_upstream(setup.upstream), options=setup.options)
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
