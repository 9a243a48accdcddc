#!/usr/bin/env bash
# Builds and tests both producer SDKs against the real `auditlog` binary (each test
# starts `auditlog auditor` itself on a free port with a temporary data directory),
# PostgreSQL, MariaDB and RabbitMQ (see DESIGN.md §9 for starting them).
#
#   sdks/test.sh                                    # target/debug/auditlog, built if missing
#   AUDITLOG_BIN=target/release/auditlog sdks/test.sh
#   AUDITLOG_SDK_OUTAGE_S=5 sdks/test.sh            # a shorter auditor outage (default 30 s)
#
# Installs what is missing: the Node packages from package-lock.json (npm ci:
# TypeScript, amqplib, pg, mysql2) and a venv in target/sdk-venv with pytest and
# the SDK's extras (pika, aio-pika, psycopg, PyMySQL) from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

binary=${AUDITLOG_BIN:-target/debug/auditlog}
if [ ! -x "$binary" ]; then
  cargo build --locked -p auditlog
fi
AUDITLOG_BIN=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")
export AUDITLOG_BIN

step "Node SDK: install, build, test"
(cd sdks/node && npm ci --no-audit --no-fund >/dev/null && npm test)

step "Node SDK: npm pack gives a tarball that installs and imports"
pack=$(mktemp -d)
trap 'rm -rf "$pack"' EXIT
(cd sdks/node && npm pack --silent --pack-destination "$pack" >/dev/null)
(cd "$pack" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent ./auditlog-*.tgz \
  && node --input-type=module -e 'import { createEmitter, diff } from "auditlog"; if (typeof createEmitter !== "function" || typeof diff !== "function") process.exit(1); console.log("the packed auditlog imports")')

step "Python SDK: venv with pytest and the extras, install, test"
venv=target/sdk-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "./sdks/python[amqp,postgres,mysql,test]"
# The package itself installs without the network (a dependency-free build backend).
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-index --force-reinstall --no-deps ./sdks/python
venv_python=$(cd "$venv/bin" && pwd)/python
(cd sdks/python/tests && "$venv_python" -m pytest -q -p no:cacheprovider .)
