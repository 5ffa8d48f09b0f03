#!/bin/bash
# First start on an empty data directory: create the system tables, the root password
# (for root@'%', as the official image's default MYSQL_ROOT_HOST), the database and its
# user, on a server that accepts no network connections yet; then run the real server.
set -euo pipefail

[ "${1:-}" = mariadbd ] || exec "$@"
datadir=/var/lib/mysql
mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld "$datadir"

sql_string() {  # a value as a quoted SQL string literal
    local value=${1//\\/\\\\}
    printf "'%s'" "${value//\'/\'\'}"
}

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
    root_password=$(sql_string "$MYSQL_ROOT_PASSWORD")
    {
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $root_password;"
        echo "CREATE USER 'root'@'%' IDENTIFIED BY $root_password;"
        echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
        if [ -n "${MYSQL_DATABASE:-}" ]; then
            echo "CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"
        fi
        if [ -n "${MYSQL_USER:-}" ] && [ -n "${MYSQL_PASSWORD:-}" ]; then
            echo "CREATE USER $(sql_string "$MYSQL_USER")@'%' IDENTIFIED BY $(sql_string "$MYSQL_PASSWORD");"
            [ -z "${MYSQL_DATABASE:-}" ] || echo "GRANT ALL ON \`$MYSQL_DATABASE\`.* TO $(sql_string "$MYSQL_USER")@'%';"
        fi
        echo "FLUSH PRIVILEGES;"
    } | mariadb --socket=/run/mysqld/init.sock -uroot
    kill "$pid"
    wait "$pid"
    echo "Database initialised"
fi
exec mariadbd --user=mysql
