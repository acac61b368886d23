"""The `reservoir gpus` table."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from reservoir.db import Database
from sessions.models import SchedNode
from sessions.queue import device_holders
from sessions.resources import MILLI_PER_GPU


def _shares(milli: int) -> str:
    return f"{milli / MILLI_PER_GPU:.2f}"


def gpu_table(db: Database) -> str:
    holders = device_holders(db)
    header = ("NODE", "GROUP", "GPU", "MODEL", "MEMORY", "MIG", "UTIL", "USED", "FREE", "HOLDERS")
    rows: list[tuple[str, ...]] = []
    with db.session() as session:
        nodes = session.scalars(select(SchedNode).options(selectinload(SchedNode.devices)).order_by(SchedNode.name))
        for node in nodes:
            name = node.name if node.online else f"{node.name} (offline)"
            for device in node.devices:
                held = holders.get(device.uuid, [])
                used = sum(milli for _, _, milli in held)
                facts = device.facts or {}
                mig = str(facts.get("mig_mode", "-"))
                if facts.get("mig_instances"):
                    mig += f" ({len(facts['mig_instances'])} instances)"
                util = facts.get("utilization_pct")
                rows.append(
                    (
                        name,
                        node.resource_group,
                        device.uuid,
                        device.model,
                        f"{device.memory_mib} MiB" if device.memory_mib else "-",
                        mig,
                        "-" if util is None else f"{util} %",
                        _shares(used),
                        _shares(MILLI_PER_GPU - used),
                        ", ".join(f"{user}#{rid}:{_shares(milli)}" for user, rid, milli in held) or "-",
                    )
                )
    if not rows:
        return "no GPUs known (declare [[scheduler.nodes]] in reservoir.toml, or run on a machine with an NVIDIA driver)"
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows])
