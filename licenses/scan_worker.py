"""A long-lived scancode process: loads the license index once, then scans files on request.

Protocol, JSON lines: the worker first prints {"ready": true, "version": V};
then for each request line {"path": P} it prints {"path": P, "expression":
SPDX-or-null, "matches": [...]} or {"path": P, "error": TEXT}.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def compact(result: dict[str, Any]) -> dict[str, Any]:
    """The parts of scancode's answer a verdict needs: the SPDX expression and each match's evidence."""
    matches = []
    for detection in result.get("license_detections") or []:
        for match in detection.get("matches") or []:
            matches.append({
                "spdx": match.get("license_expression_spdx"),
                "start_line": match.get("start_line"),
                "end_line": match.get("end_line"),
                "score": match.get("score"),
                "coverage": match.get("match_coverage"),
                "rule": match.get("rule_identifier"),
            })
    return {"expression": result.get("detected_license_expression_spdx") or None, "matches": matches}


def main() -> None:
    from licensedcode.cache import get_index
    from scancode.api import get_licenses
    from scancode_config import __version__

    get_index()
    print(json.dumps({"ready": True, "version": __version__}), flush=True)
    for line in sys.stdin:
        path = json.loads(line)["path"]
        try:
            answer = {"path": path, **compact(get_licenses(path))}
        except Exception as exc:  # noqa: BLE001 - one bad file must not end the worker
            answer = {"path": path, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
