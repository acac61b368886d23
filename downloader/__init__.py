"""Ecosystem adapters of the connected hub: read an upstream, select, fetch.

`base` holds the shapes every ecosystem shares; each ecosystem is one
subpackage (`pypi`) behind them.
"""
