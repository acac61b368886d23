"""Security advisories (OSV): import, per-ecosystem version order, quarantine."""
