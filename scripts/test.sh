#!/usr/bin/env bash
# Sets up Bastion with its test dependencies and runs every test (lint and types included).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
.venv/bin/ruff check src tests bench
.venv/bin/mypy src tests bench
exec .venv/bin/python -m pytest -q "$@"
