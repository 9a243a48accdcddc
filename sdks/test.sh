#!/usr/bin/env bash
# Builds and tests both producer SDKs against the real `auditlog` binary (each test
# starts `auditlog auditor` itself on a free port with a temporary data directory),
# PostgreSQL, MariaDB and RabbitMQ (see DESIGN.md §9 for starting them), then runs
# the example apps (Express, Flask) against `auditlog up` and checks the website
# lists their events in headless Chromium (tests/browser/sdk-examples.mjs).
#
#   sdks/test.sh                                    # target/debug/auditlog, built if missing
#   AUDITLOG_BIN=target/release/auditlog sdks/test.sh
#   AUDITLOG_SDK_OUTAGE_S=5 sdks/test.sh            # a shorter auditor outage (default 30 s)
#
# Installs what is missing, and says what to do when it cannot: the Node packages
# from the lockfiles (npm ci: the SDK's TypeScript, amqplib, pg, mysql2; the Express
# example's express; the browser tests' playwright-core), a venv in target/sdk-venv
# with pytest, the SDK's extras (pika, aio-pika, psycopg, PyMySQL) and Flask from
# PyPI, and Debian's chromium (apt-get) for the browser test.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'sdks/test.sh: %s\n' "$*" >&2; exit 1; }

step "prerequisites"
command -v node >/dev/null && command -v npm >/dev/null \
  || die "Node.js 20 or newer (node and npm) is needed: apt-get install nodejs npm, or https://nodejs.org"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
  || die "Node.js 20 or newer is needed; this is $(node --version)"
command -v python3 >/dev/null || die "Python 3.11 or newer is needed (python3)"
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || die "Python 3.11 or newer is needed; python3 is $(python3 --version 2>&1)"
# The services the suites use for real (DESIGN.md §9 says how to start them).
service_up() { # name host port
  python3 -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()' "$2" "$3" 2>/dev/null \
    || die "$1 is not reachable at $2:$3; start it (DESIGN.md §9) — the SDK suites use it for real"
}
service_up PostgreSQL 127.0.0.1 5432
service_up MariaDB 127.0.0.1 3306
service_up RabbitMQ 127.0.0.1 5672
chromium=${CHROMIUM_PATH:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  [ -n "${CHROMIUM_PATH:-}" ] && die "CHROMIUM_PATH names $chromium, which is not an executable"
  echo "installing Debian's chromium for the browser test"
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; } \
    || die "Chromium is missing and could not be installed: run 'apt-get update && apt-get install -y chromium' as root, or set CHROMIUM_PATH"
fi
echo "node $(node --version), $(python3 --version), chromium at $chromium; PostgreSQL, MariaDB and RabbitMQ reachable"

binary=${AUDITLOG_BIN:-target/debug/auditlog}
if [ ! -x "$binary" ]; then
  command -v cargo >/dev/null || die "$binary is missing and cargo is not installed to build it"
  cargo build --locked -p auditlog
fi
AUDITLOG_BIN=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")
export AUDITLOG_BIN

step "Node SDK: install, build, test"
(cd sdks/node && npm ci --no-audit --no-fund >/dev/null && npm test) \
  || die "the Node SDK's install or tests failed (see above)"

step "Node SDK: npm pack gives a tarball that installs and imports"
pack=$(mktemp -d)
trap 'rm -rf "$pack"' EXIT
(cd sdks/node && npm pack --silent --pack-destination "$pack" >/dev/null)
(cd "$pack" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent ./auditlog-*.tgz \
  && node --input-type=module -e 'import { createEmitter, diff } from "auditlog"; if (typeof createEmitter !== "function" || typeof diff !== "function") process.exit(1); console.log("the packed auditlog imports")')

step "Python SDK: venv with pytest, the extras and Flask, install, test"
venv=target/sdk-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" \
    || die "python3 -m venv failed: on Debian, apt-get install python3-venv (or python3.11-venv)"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "./sdks/python[amqp,postgres,mysql,test]" "flask>=3" \
  || die "pip could not install the SDK's test dependencies from PyPI (pytest, pika, aio-pika, psycopg, PyMySQL, Flask)"
# The package itself installs without the network (a dependency-free build backend).
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-index --force-reinstall --no-deps ./sdks/python
venv_python=$(cd "$venv/bin" && pwd)/python
(cd sdks/python/tests && "$venv_python" -m pytest -q -p no:cacheprovider .)

step "Example apps (Express, Flask) against auditlog up; the website lists their events (Chromium)"
(cd sdks/node/examples/users-service && npm ci --no-audit --no-fund >/dev/null) \
  || die "npm ci in sdks/node/examples/users-service failed"
[ -d tests/browser/node_modules/playwright-core ] || npm ci --no-audit --no-fund --prefix tests/browser >/dev/null \
  || die "npm ci in tests/browser (playwright-core) failed"
CHROMIUM_PATH=$chromium AUDITLOG_SDK_PYTHON=$venv_python node tests/browser/sdk-examples.mjs
