"""Reservoir core: configuration, database, blob store and the CLI entry point.

The core knows no package ecosystem; components plug in through the entry
point groups declared in pyproject.toml (see reservoir.plugins).
"""

__version__ = "0.1.0"
