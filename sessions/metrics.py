"""/metrics in Prometheus' text format: sessions per user and group, wait times, shares per node."""

from __future__ import annotations

from datetime import timezone

from sqlalchemy import select

from reservoir.db import Database
from sessions.models import ComputeSession, RequestState, SchedNode, SchedRequest, SessionState
from sessions.resources import MILLI_PER_GPU

WAIT_BUCKETS_S = (1, 5, 15, 60, 300, 900, 3600, 14400)


def _labels(**values: str) -> str:
    inner = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in values.items())
    return "{" + inner + "}"


def render(db: Database) -> str:
    lines: list[str] = []
    with db.session() as session:
        counts: dict[tuple[str, str, str], int] = {}
        waits: list[float] = []
        for row, request in session.execute(
            select(ComputeSession, SchedRequest).join(SchedRequest, SchedRequest.id == ComputeSession.request_id)
        ):
            if row.state in (SessionState.QUEUED, SessionState.STARTING, SessionState.RUNNING):
                state = "queued" if row.state == SessionState.QUEUED else "running"
                key = (state, row.user, request.resource_group)
                counts[key] = counts.get(key, 0) + 1
            if row.started_at is not None:
                created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=timezone.utc)
                started = row.started_at if row.started_at.tzinfo else row.started_at.replace(tzinfo=timezone.utc)
                waits.append(max(0.0, (started - created).total_seconds()))
        lines += ["# HELP reservoir_sessions Sessions now queued or running.", "# TYPE reservoir_sessions gauge"]
        for (state, user, group), n in sorted(counts.items()):
            lines.append(f"reservoir_sessions{_labels(state=state, user=user, group=group)} {n}")
        lines += ["# HELP reservoir_session_wait_seconds From create to start.", "# TYPE reservoir_session_wait_seconds histogram"]
        for bound in WAIT_BUCKETS_S:
            lines.append(f'reservoir_session_wait_seconds_bucket{{le="{bound}"}} {sum(1 for w in waits if w <= bound)}')
        lines.append(f'reservoir_session_wait_seconds_bucket{{le="+Inf"}} {len(waits)}')
        lines.append(f"reservoir_session_wait_seconds_sum {sum(waits):.3f}")
        lines.append(f"reservoir_session_wait_seconds_count {len(waits)}")
        lines += ["# HELP reservoir_gpu_shares GPU shares per node, allocated and free.", "# TYPE reservoir_gpu_shares gauge"]
        for node in session.scalars(select(SchedNode).where(SchedNode.online).order_by(SchedNode.name)):
            capacity = len(node.devices) * MILLI_PER_GPU
            allocated = sum(
                a.milli
                for r in session.scalars(
                    select(SchedRequest).where(SchedRequest.node_id == node.id, SchedRequest.state == RequestState.PLACED)
                )
                for a in r.allocations
            )
            labels = dict(node=node.name, group=node.resource_group)
            lines.append(f"reservoir_gpu_shares{_labels(state='allocated', **labels)} {allocated / MILLI_PER_GPU:g}")
            lines.append(f"reservoir_gpu_shares{_labels(state='free', **labels)} {(capacity - allocated) / MILLI_PER_GPU:g}")
    return "\n".join(lines) + "\n"
