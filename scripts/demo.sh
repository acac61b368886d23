#!/usr/bin/env bash
# The main job end to end on embedded defaults; prints each command a user types.
set -euo pipefail
echo "demo: nothing to demonstrate yet"
