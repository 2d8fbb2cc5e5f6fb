#!/bin/sh
# The entry point of the rehearsal's stand-in PostgreSQL image (courseredis.rehearsal.images,
# run by courseredis.rehearsal.standins).
#
# Contract: runs as the image's postgres user, never root. POSTGRES_PASSWORD is required (a
# database reachable from the network without a password is refused); POSTGRES_USER
# (default postgres) and POSTGRES_DB (default: the user) name the role and database. PGDATA
# and PGHOST (the socket directory) come from the image, both under a writable volume.
# First start (no $PGDATA/PG_VERSION): initdb with POSTGRES_USER as its superuser, the
# database created, network clients admitted by password only (scram-sha-256). Then
# postgres runs in the foreground on 0.0.0.0:5432, logging to stderr.
set -eu

if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres-stand-in: POSTGRES_PASSWORD is empty; refusing to start" >&2
    exit 1
fi
user="${POSTGRES_USER:-postgres}"
database="${POSTGRES_DB:-$user}"
mkdir -p "$PGHOST"
chmod 0700 "$PGHOST"  # only this user reaches the socket: it may be trusted below

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    # Made aside and moved into place once complete: a start killed half-way (a failed
    # probe, a deleted pod) leaves no cluster without its database behind.
    fresh="$PGDATA.new"
    rm -rf "$fresh"
    # The password through a pipe, never a file or the command line.
    printf '%s\n' "$POSTGRES_PASSWORD" | initdb --pgdata="$fresh" --username="$user" \
        --pwfile=/dev/stdin --encoding=UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 >&2
    # initdb admits loopback only; the services come from the pod network.
    cat >"$fresh/pg_hba.conf" <<'EOF'
local all all trust
host all all 0.0.0.0/0 scram-sha-256
host all all ::/0 scram-sha-256
EOF
    if [ "$database" != postgres ]; then
        # A server on the socket only: no client can connect before the database exists.
        pg_ctl --pgdata="$fresh" --wait --silent \
            --options="-c listen_addresses='' -c unix_socket_directories=$PGHOST" start >&2
        createdb --username="$user" --maintenance-db=postgres -- "$database"
        pg_ctl --pgdata="$fresh" --wait --silent --mode=fast stop >&2
    fi
    rmdir "$PGDATA" 2>/dev/null || true
    mv "$fresh" "$PGDATA"
fi

exec postgres -D "$PGDATA" -c listen_addresses=0.0.0.0 -c "unix_socket_directories=$PGHOST"
