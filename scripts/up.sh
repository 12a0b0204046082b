#!/usr/bin/env bash
# Sets up Bastion and starts it on embedded defaults (SQLite in ./data, no other service).
# Extra arguments go to `bastion up` (e.g. --host 0.0.0.0 --port 8080 --data-dir /srv/bastion).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/bastion up "$@"
