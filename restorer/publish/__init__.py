"""Publishing the site's repository trees.

Each ecosystem has one publisher (``pypi.py`` today; APT, YUM and CRAN plug
in the same way) that writes a complete, static, client-facing tree from
the site's catalog and blob store. ``publish_site`` rebuilds every tree and
swaps each in atomically (see ``tree.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session

from reservoir.blobs import BlobStore
from reservoir.context import AppContext
from restorer.publish.pypi import PypiPublisher
from restorer.publish.tree import live_generation, publish_tree

log = logging.getLogger(__name__)


class Publisher(Protocol):
    kind: str

    def build(self, session: Session, blobs: BlobStore, tree: Path) -> int:
        """Write the whole tree into the empty directory `tree`; return the project count."""
        ...


def publishers() -> tuple[Publisher, ...]:
    return (PypiPublisher(),)


@dataclass(frozen=True)
class PublishResult:
    kind: str
    generation: Path
    projects: int


def tree_root(app: AppContext, kind: str) -> Path:
    return app.home.trees_dir / kind


def publish_site(app: AppContext) -> list[PublishResult]:
    """Rebuild every ecosystem's tree from the catalog and swap it in."""
    results = []
    with app.db.session() as session:
        for publisher in publishers():
            count = 0

            def build(tree: Path, publisher: Publisher = publisher) -> None:
                nonlocal count
                count = publisher.build(session, app.blobs, tree)

            generation = publish_tree(tree_root(app, publisher.kind), build)
            log.info("published %s: %d projects in %s", publisher.kind, count, generation.name)
            results.append(PublishResult(publisher.kind, generation, count))
    return results


__all__ = ["Publisher", "PublishResult", "live_generation", "publish_site", "publishers", "tree_root"]
