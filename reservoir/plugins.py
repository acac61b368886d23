"""Discovery of components through entry points.

The core must not import the component folders (hub, downloader, ...);
instead each component declares in pyproject.toml:

- ``reservoir.commands``: a callable ``register(cli: click.Group) -> None``
  that adds its subcommands;
- ``reservoir.models``: a module whose import defines its tables on
  ``reservoir.db.Base``;
- ``reservoir.migrations``: a package whose directory holds that
  component's Alembic revisions (its own branch, labelled with its name);
- ``reservoir.vetters``: a callable ``vet(app: AppContext, release_ids:
  list[int]) -> None`` that a hub runs on releases a sync just fetched
  (license and security vetting); it sets ``Release.gate`` and records its
  verdict in ``Release.meta["vetting"]``, which travels in bundles;
- ``reservoir.web``: a callable ``register(app: aiohttp.web.Application,
  state) -> None`` that adds a component's routes to the site's server.
- ``reservoir.init``: a callable ``hook(home: Home, role: str) -> str | None``
  that `init` runs on a new home (a site's OpenPGP key); it returns a line to print.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any


def _group(name: str) -> list[EntryPoint]:
    return sorted(entry_points(group=name), key=lambda ep: ep.name)


def command_registrars() -> list[Callable[[Any], None]]:
    return [ep.load() for ep in _group("reservoir.commands")]


def load_model_modules() -> None:
    for ep in _group("reservoir.models"):
        importlib.import_module(ep.value)


def migration_locations() -> list[Path]:
    locations = []
    for ep in _group("reservoir.migrations"):
        module = importlib.import_module(ep.value)
        assert module.__file__ is not None
        locations.append(Path(module.__file__).parent)
    return locations


def vetters() -> list[Callable[..., None]]:
    return [ep.load() for ep in _group("reservoir.vetters")]


def web_registrars() -> list[Callable[..., None]]:
    return [ep.load() for ep in _group("reservoir.web")]


def init_hooks() -> list[Callable[..., str | None]]:
    return [ep.load() for ep in _group("reservoir.init")]
