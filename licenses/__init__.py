"""License and security vetting: declared and detected licenses, policy, reviews, reports, advisories."""
