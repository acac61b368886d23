"""What every command gets: the home, its database and blob store, opened lazily."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reservoir.blobs import BlobStore
from reservoir.home import Home, load_home

if TYPE_CHECKING:
    from reservoir.db import Database


@dataclass
class AppContext:
    home_root: Path
    _home: Home | None = field(default=None, init=False)
    _db: Database | None = field(default=None, init=False)
    _blobs: BlobStore | None = field(default=None, init=False)

    @property
    def home(self) -> Home:
        if self._home is None:
            self._home = load_home(self.home_root)
        return self._home

    @property
    def db(self) -> Database:
        if self._db is None:
            # Imported here: SQLAlchemy is most of a command's start-up, and commands
            # that only talk to a server (sessions) never open the database.
            from reservoir.db import open_database

            self._db = open_database(self.home.db_url)
        return self._db

    @property
    def blobs(self) -> BlobStore:
        if self._blobs is None:
            self._blobs = BlobStore(self.home.blobs_dir)
        return self._blobs

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()


pass_app = click.make_pass_decorator(AppContext)
