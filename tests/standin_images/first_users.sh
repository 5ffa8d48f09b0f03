# Sourced by the database stand-ins' entrypoints (mariadb/, mysql/): the first start's
# accounts, as the official mysql image makes them from its MYSQL_* variables.

sql_string() {  # a value as a quoted SQL string literal
    local value=${1//\\/\\\\}
    printf "'%s'" "${value//\'/\'\'}"
}

first_users_sql() {  # the root password (for root@'%' too, as MYSQL_ROOT_HOST's default), the database and its user
    local root_password
    root_password=$(sql_string "$MYSQL_ROOT_PASSWORD")
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
}
