#!/bin/sh
# One-shot job of the shared stack: the database of MLflow's basic-auth app, on the same
# MySQL server and for the same user as MLflow's own. Safe to re-run. Needs MYSQL_PWD
# (root's), MYSQL_USER and MLFLOW_AUTH_DATABASE.
set -eu
db="${MLFLOW_AUTH_DATABASE}"
mysql -h mysql -u root -e "CREATE DATABASE IF NOT EXISTS \`$db\`; GRANT ALL ON \`$db\`.* TO '${MYSQL_USER}'@'%';"
tables=$(mysql -h mysql -u root -N -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '$db'")
if [ "$tables" = 0 ]; then
    mysql -h mysql -u root "$db" </auth-schema.sql  # see the file for why
fi
echo "auth database $db is ready"
