"""The placement policies' names, apart from their (numpy) code so the CLI can list them cheaply."""

POLICY_NAMES = ("fgd-bf", "fgd", "bestfit", "spread", "random", "dotprod", "gpupacking", "gpuclustering")
