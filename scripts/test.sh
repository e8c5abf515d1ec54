#!/usr/bin/env bash
# Sets everything up, then runs the whole suite: typecheck, lint, format, unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
npm test
