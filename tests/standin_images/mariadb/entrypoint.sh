#!/bin/bash
# First start on an empty data directory: create the system tables, the root password
# (for root@'%', as the official image's default MYSQL_ROOT_HOST), the database and its
# user, on a server that accepts no network connections yet; then run the real server.
set -euo pipefail

[ "${1:-}" = mariadbd ] || exec "$@"
datadir=/var/lib/mysql
mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld "$datadir"

# shellcheck source=tests/standin_images/first_users.sh
. /usr/local/lib/standin/first_users.sh

if [ ! -d "$datadir/mysql" ]; then
    : "${MYSQL_ROOT_PASSWORD:?set MYSQL_ROOT_PASSWORD}"
    if [ "${MYSQL_USER:-}" = root ]; then
        echo "MYSQL_USER=root: MYSQL_USER and MYSQL_PASSWORD configure a regular user, not root" >&2
        exit 1
    fi
    echo "Initialising the database in $datadir"
    mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
        --auth-root-authentication-method=normal >/dev/null
    mariadbd --user=mysql --skip-networking --socket=/run/mysqld/init.sock &
    pid=$!
    for _ in $(seq 1 60); do
        mariadb-admin --socket=/run/mysqld/init.sock -uroot ping --silent 2>/dev/null && break
        sleep 0.5
    done
    first_users_sql | mariadb --socket=/run/mysqld/init.sock -uroot
    kill "$pid"
    wait "$pid"
    echo "Database initialised"
fi
exec mariadbd --user=mysql
