#!/bin/bash
# The official mysql image's start-up, for genuine MySQL. First start on an empty data
# directory: create the system tables, the root password (for root@'%', as the official
# image's default MYSQL_ROOT_HOST), the database and its user, run
# /docker-entrypoint-initdb.d, all on a server that accepts no network connections yet;
# then run the real server. Each MYSQL_* setting may come from a file instead (*_FILE).
set -euo pipefail

# Options alone (`docker run IMAGE --max-connections=300`) are the server's, as officially.
case "${1:-}" in
    -*) set -- mysqld "$@" ;;
esac
[ "${1:-}" = mysqld ] || exec "$@"
datadir=/var/lib/mysql
socket=/var/run/mysqld/init.sock
mkdir -p /var/run/mysqld
chown mysql:mysql /var/run/mysqld "$datadir"

file_env() {  # VAR: its value, or the contents of the file VAR_FILE names (not both)
    local var=$1 file_var="${1}_FILE"
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        echo "both $var and $file_var are set: set one" >&2
        exit 1
    fi
    if [ -n "${!file_var:-}" ]; then
        export "$var"="$(<"${!file_var}")"
    fi
}

# shellcheck source=tests/standin_images/first_users.sh
. /usr/local/lib/standin/first_users.sh

if [ ! -d "$datadir/mysql" ]; then
    for var in MYSQL_ROOT_PASSWORD MYSQL_DATABASE MYSQL_USER MYSQL_PASSWORD; do
        file_env "$var"
    done
    : "${MYSQL_ROOT_PASSWORD:?set MYSQL_ROOT_PASSWORD}"
    if [ "${MYSQL_USER:-}" = root ]; then
        echo "MYSQL_USER=root: MYSQL_USER and MYSQL_PASSWORD configure a regular user, not root" >&2
        exit 1
    fi
    echo "Initialising the database in $datadir ($(mysqld --version))"
    # Its log goes to stderr, as the official image's does.
    "$@" --initialize-insecure --user=mysql
    "$@" --user=mysql --skip-networking --mysqlx=OFF --socket="$socket" &
    pid=$!
    for _ in $(seq 1 120); do
        mysqladmin --socket="$socket" -uroot ping --silent 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { echo "the server stopped while initialising" >&2; exit 1; }
        sleep 0.5
    done
    {
        # The statements below write no binary log, as officially (nothing to replicate).
        echo "SET @@SESSION.SQL_LOG_BIN=0;"
        first_users_sql
    } | mysql --protocol=socket --socket="$socket" -uroot
    # Init scripts, as the official image runs them: *.sh sourced, *.sql and *.sql.gz into
    # MYSQL_DATABASE (when set) as root.
    export MYSQL_PWD="$MYSQL_ROOT_PASSWORD"
    client=(mysql --protocol=socket --socket="$socket" -uroot ${MYSQL_DATABASE:+"$MYSQL_DATABASE"})
    for file in /docker-entrypoint-initdb.d/*; do
        case "$file" in
            *.sh) echo "running $file"; # shellcheck disable=SC1090
                  . "$file" ;;
            *.sql) echo "running $file"; "${client[@]}" <"$file" ;;
            *.sql.gz) echo "running $file"; gunzip -c "$file" | "${client[@]}" ;;
            *) [ ! -e "$file" ] || echo "ignoring $file" ;;
        esac
    done
    unset MYSQL_PWD
    kill "$pid"
    wait "$pid"
    echo "Database initialised"
fi
exec "$@" --user=mysql
