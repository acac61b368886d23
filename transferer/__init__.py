"""Bundles: what crosses the air gap, signed, incremental and chunked."""
