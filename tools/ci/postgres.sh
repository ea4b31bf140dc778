#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the store tests and print its DSN.
#
#   export PERSONA_TEST_PG_DSN=$(bash tools/ci/postgres.sh)
#   GOEXPERIMENT=simd go test ./audit/
#
# Installs Debian's postgresql when missing (needs root, as CI is), creates a
# cluster in a fresh temporary directory owned by the postgres user (the
# server refuses to run as root), starts it on a free local port with
# password authentication off for local TCP and room for the fleet tests'
# worker processes (200 connections), and creates database
# persona_test. Logs go to $PGDATA/server.log; stop it with
#   runuser -u postgres -- pg_ctl -D "$PGDATA" stop
# (the data directory is printed on stderr).
set -euo pipefail

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [[ -z "$bindir" || ! -x "$bindir/initdb" ]]; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "postgres.sh: PostgreSQL is not installed; run as root or: apt-get install -y postgresql" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq postgresql >&2
	bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi

run=()
if [[ $(id -u) -eq 0 ]]; then
	id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
	run=(runuser -u postgres --)
fi

# The postgres user cannot enter the caller's directory (CI's checkout is
# private to root); run everything from the data directory's parent.
cd /tmp
data=$(mktemp -d /tmp/persona-pg.XXXXXX)
[[ $(id -u) -eq 0 ]] && chown postgres "$data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)))

"${run[@]}" "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
"${run[@]}" "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
	-o "-h 127.0.0.1 -p $port -k $data -c fsync=off -c max_connections=200" start >/dev/null
"${run[@]}" "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres persona_test

echo "postgres.sh: server in $data on port $port" >&2
echo "postgres://postgres@127.0.0.1:$port/persona_test?sslmode=disable"
