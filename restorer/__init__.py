"""The air-gapped site: import bundles, publish repository trees, serve them."""
