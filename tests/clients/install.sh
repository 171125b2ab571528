#!/usr/bin/env bash
# Installs the real third-party RocketMQ clients the tests drive, into this directory only:
# npm ali-ons (node_modules/) and PyPI rocketmq-client-python (.venv/). Idempotent and quick
# when already installed. Safe to run concurrently (flock).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
exec 9>"$here/.install.lock"
flock 9
stamp_node="node_modules/.wasmq-installed"
if [ ! -f "$stamp_node" ] || [ package.json -nt "$stamp_node" ]; then
  command -v npm >/dev/null || { echo "install.sh: npm is required (Node.js)" >&2; exit 1; }
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  else
    npm install --no-audit --no-fund --loglevel=error
  fi
  touch "$stamp_node"
fi
stamp_py=".venv/.wasmq-installed"
if [ ! -f "$stamp_py" ] || [ requirements.txt -nt "$stamp_py" ]; then
  py="$(command -v python3 || command -v python)" || { echo "install.sh: python3 is required" >&2; exit 1; }
  rm -rf .venv
  "$py" -m venv .venv
  .venv/bin/pip install --quiet -r requirements.txt
  .venv/bin/python -c "import rocketmq.client" || { echo "install.sh: rocketmq-client-python does not load" >&2; exit 1; }
  touch "$stamp_py"
fi
echo "clients installed in $here"
