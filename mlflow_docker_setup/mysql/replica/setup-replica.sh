#!/bin/sh
# One-shot job of the read replica (docker-compose.read-replica.yml), run at every start
# before MLflow: makes mysql-replica a GTID replica of mysql, and returns once the replica
# has applied everything the primary holds and every table's checksum matches. The first
# time (and whenever the checksums differ), the primary's databases are copied with
# mysqldump (--single-transaction, with the GTID position) and replication continues from
# that position, so a primary that already holds data is replicated whole; otherwise the
# replica resumes where it stopped.
# Works with MySQL (8.0.23 and later) and MariaDB (10.5 and later) as the image is.
# Needs MYSQL_PWD (root's, the same on both servers).
set -eu

primary() { mysql -h mysql -u root -N -B "$@"; }
replica() { mysql -h mysql-replica -u root -N -B "$@"; }
fail() { echo "setup-replica: $*" >&2; exit 1; }

# The replication user's password, derived from root's: no new secret to keep, and the
# replica stores this one (in its connection metadata), never root's. It may only replicate.
repl_password="$(printf 'mlflow-read-replica:%s' "$MYSQL_PWD" | sha256sum | cut -c1-32)"  # MySQL takes 32 at most

case "$(primary -e 'SELECT VERSION()')" in
    *MariaDB*) flavor=mariadb ;;
    *) flavor=mysql ;;
esac

primary -e "CREATE USER IF NOT EXISTS 'replicator'@'%' IDENTIFIED BY '$repl_password';
            ALTER USER 'replicator'@'%' IDENTIFIED BY '$repl_password';
            GRANT REPLICATION SLAVE ON *.* TO 'replicator'@'%';"

SYSTEM_SCHEMAS="'mysql', 'information_schema', 'performance_schema', 'sys'"

# The primary's databases onto the replica, and replication set to continue from the copy's
# position. The replica's own accounts come from its first start (the same MYSQL_* settings).
copy_primary() {
    echo "copying the primary's databases to the replica"
    databases="$(primary -e "SELECT schema_name FROM information_schema.schemata
                             WHERE schema_name NOT IN ($SYSTEM_SCHEMAS)")"
    # A file, not a pipe: a failed dump stops here (sh has no pipefail); removed after.
    if [ "$flavor" = mysql ]; then
        replica -e "SET GLOBAL super_read_only = OFF; STOP REPLICA; RESET REPLICA ALL"
        replica -e "RESET BINARY LOGS AND GTIDS" 2>/dev/null || replica -e "RESET MASTER"  # before 8.4
        # shellcheck disable=SC2086  # one word per database
        mysqldump -h mysql -u root --single-transaction --set-gtid-purged=ON --routines --events \
            --triggers --databases $databases >/tmp/copy.sql
        replica </tmp/copy.sql
        replica -e "CHANGE REPLICATION SOURCE TO SOURCE_HOST = 'mysql', SOURCE_PORT = 3306,
                    SOURCE_USER = 'replicator', SOURCE_PASSWORD = '$repl_password',
                    SOURCE_AUTO_POSITION = 1, SOURCE_SSL = 1;
                    SET PERSIST super_read_only = ON"
    else
        replica -e "SET GLOBAL read_only = OFF; STOP REPLICA; RESET REPLICA ALL; RESET MASTER"
        # The dump sets gtid_slave_pos; the copy itself stays out of the replica's binary log.
        echo "SET SESSION sql_log_bin = 0;" >/tmp/copy.sql
        # shellcheck disable=SC2086
        mysqldump -h mysql -u root --single-transaction --gtid --master-data=1 --routines --events \
            --triggers --databases $databases >>/tmp/copy.sql
        replica </tmp/copy.sql
        replica -e "CHANGE MASTER TO MASTER_HOST = 'mysql', MASTER_PORT = 3306,
                    MASTER_USER = 'replicator', MASTER_PASSWORD = '$repl_password',
                    MASTER_USE_GTID = slave_pos;
                    SET GLOBAL read_only = ON"
    fi
    rm -f /tmp/copy.sql
}

# Replicating, and caught up with the primary as it is now; else one line saying why not.
replicate_and_catch_up() {
    replica -e "START REPLICA" 2>/dev/null || true  # already running: fine
    if [ "$flavor" = mysql ]; then
        position="$(primary -e 'SELECT @@GLOBAL.gtid_executed' | tr -d '\n')"
        caught_up="$(replica -e "SELECT WAIT_FOR_EXECUTED_GTID_SET('$position', 120)")"
    else
        position="$(primary -e 'SELECT @@GLOBAL.gtid_binlog_pos')"
        caught_up="$(replica -e "SELECT MASTER_GTID_WAIT('$position', 120)")"
    fi
    if [ "$caught_up" != 0 ]; then
        status="$(replica -E -e 'SHOW REPLICA STATUS' | grep -E '_(IO|SQL)_(Running|Error):' \
                  | sed 's/^ *//' | tr '\n' ' ')"
        fail "the replica did not catch up with the primary within 120 s: $status"
    fi
}

# Every table's checksum, the same on both servers at one GTID position. Replication alone
# cannot promise it: a primary started without this overlay (MLFLOW_READ_REPLICA=0) wrote
# without a binary log (MariaDB) or GTIDs (MySQL), and a replica resuming after that would
# silently lack those writes. One position, because MLflow may be writing meanwhile (a start
# on a running stack): the primary's position and checksums are taken in one session under a
# brief read lock (writers wait, nothing fails), and the replica's once it has applied
# exactly up to that position (its applier paused first, so it cannot be past it).
same_data() {
    tables="$(primary -e "SET SESSION group_concat_max_len = 1048576; SELECT GROUP_CONCAT(CONCAT('\`', table_schema, '\`.\`', table_name, '\`'))
                          FROM information_schema.tables
                          WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ($SYSTEM_SCHEMAS)")"
    [ "$tables" != NULL ] || return 0
    if [ "$flavor" = mysql ]; then gtids='@@GLOBAL.gtid_executed'; else gtids='@@GLOBAL.gtid_binlog_pos'; fi
    # Called as a condition, where sh ignores set -e: each step checks itself.
    replica -e "STOP REPLICA" || fail "could not pause the replica to compare it"
    at_primary="$(primary -e "FLUSH TABLES WITH READ LOCK; SELECT $gtids; CHECKSUM TABLE $tables; UNLOCK TABLES")" \
        || fail "could not checksum the primary's tables"
    position="$(printf '%s\n' "$at_primary" | head -n 1)"  # batch mode escapes newlines: one line
    if [ -n "$position" ]; then
        # MariaDB takes UNTIL MASTER_GTID_POS only with both threads stopped; MySQL's UNTIL
        # holds the applier, its receiver goes on.
        if [ "$flavor" = mysql ]; then
            replica -e "START REPLICA UNTIL SQL_AFTER_GTIDS = '$position'" || fail "could not resume the replica"
            reached="$(replica -e "SELECT WAIT_FOR_EXECUTED_GTID_SET('$position', 120)")"
        else
            replica -e "START REPLICA UNTIL MASTER_GTID_POS = '$position'" || fail "could not resume the replica"
            reached="$(replica -e "SELECT MASTER_GTID_WAIT('$position', 120)")"
        fi
        [ "$reached" = 0 ] || fail "the replica did not reach the primary's position $position within 120 s"
    fi
    at_replica="$(replica -e "CHECKSUM TABLE $tables")" || fail "could not checksum the replica's tables"
    replica -e "STOP REPLICA; START REPLICA" || fail "could not restart replication"  # past the UNTIL
    [ "$(printf '%s\n' "$at_primary" | tail -n +2)" = "$at_replica" ]
}

if [ -z "$(replica -e 'SHOW REPLICA STATUS')" ]; then
    copy_primary
fi
replicate_and_catch_up
if ! same_data; then
    echo "the replica differs from the primary (it missed writes made without it)"
    copy_primary
    replicate_and_catch_up
    same_data || fail "the replica still differs from the primary after copying it"
fi
echo "read replica is replicating (caught up at $position, every table checked)"
