"""The report formats, apart from the renderers so the CLI can list them cheaply."""

FORMATS = ("html", "json", "csv", "spdx")
