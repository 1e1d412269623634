"""The database itself keeps the audit trail append-only for the web daemons' account.

The playbook grants the runtime account (``/etc/auditgate/auditgate.env``) table privileges
only: SELECT and INSERT on the ``audit_*`` tables, SELECT/INSERT/UPDATE/DELETE on the others,
nothing database-wide. The one exception is an event's columns that change after its insert:
its outcome (``OUTCOME_FIELDS``, written once by the gateway) and ``actor_id`` (set to NULL by
``on_delete=SET_NULL``). Migrations run as the migration account
(``/etc/auditgate/admin-db.env``), which has ALL.

The refused statements are really sent, as the runtime account, and must fail with
"command denied" (1142, or 1143 for a column). They are made harmless in case a grant is
ever too wide: DML runs in a transaction that is rolled back, and DDL runs while the
migration account holds a metadata lock on the table, so a statement that passed the
privilege check would time out waiting for the lock (1205) instead of changing anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import MySQLdb
import pytest

from apps.audit.models import OUTCOME_FIELDS

pytestmark = pytest.mark.deployed

ENV_FILE = Path("/etc/auditgate/auditgate.env")
ADMIN_ENV_FILE = Path("/etc/auditgate/admin-db.env")
SOCKET = "/run/mysqld/mysqld.sock"
# ER_TABLEACCESS_DENIED_ERROR, ER_COLUMNACCESS_DENIED_ERROR
COMMAND_DENIED = {1142, 1143}
EVENTS = "audit_auditevent"


def read_env(path: Path) -> dict[str, str]:
    """``KEY=value`` lines, as the playbook writes them; comments and blank lines skipped."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def connect(*env_files: Path) -> MySQLdb.Connection:
    """Connect with the settings of ``env_files`` (later files win), like the app does."""
    env: dict[str, str] = {}
    for path in env_files:
        env.update(read_env(path))
    return MySQLdb.connect(
        unix_socket=SOCKET,
        user=env["AUDITGATE_DB_USER"],
        password=env["AUDITGATE_DB_PASSWORD"],
        database=env["AUDITGATE_DB_NAME"],
        autocommit=False,
    )


@pytest.fixture(scope="module")
def database_name() -> str:
    return read_env(ENV_FILE)["AUDITGATE_DB_NAME"]


@pytest.fixture
def runtime() -> Iterator[MySQLdb.Connection]:
    """The web daemons' account; whatever a test did is rolled back."""
    connection = connect(ENV_FILE)
    try:
        yield connection
    finally:
        connection.rollback()
        connection.close()


@pytest.fixture
def admin() -> Iterator[MySQLdb.Connection]:
    """The migration account (root-only credentials file)."""
    connection = connect(ENV_FILE, ADMIN_ENV_FILE)
    try:
        yield connection
    finally:
        connection.rollback()
        connection.close()


def rows(connection: MySQLdb.Connection, sql: str, args: tuple = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, args)
        return list(cursor.fetchall())


def refused(connection: MySQLdb.Connection, sql: str) -> int:
    """Run ``sql`` and return the MySQL error code it failed with (the test fails if it ran)."""
    with pytest.raises(MySQLdb.MySQLError) as failure, connection.cursor() as cursor:
        cursor.execute(sql)
    return failure.value.args[0]


def own_table_privileges(connection: MySQLdb.Connection, database: str) -> dict[str, set[str]]:
    """{table: {privilege, ...}} that the connected account holds at table level."""
    granted: dict[str, set[str]] = {}
    found = rows(
        connection,
        "SELECT table_name, privilege_type FROM information_schema.table_privileges"
        " WHERE grantee = %s AND table_schema = %s",
        (grantee(connection), database),
    )
    for table, privilege in found:
        granted.setdefault(table, set()).add(privilege)
    return granted


def grantee(connection: MySQLdb.Connection) -> str:
    """``'user'@'host'``, as information_schema writes the account."""
    user, host = rows(connection, "SELECT CURRENT_USER()")[0][0].rsplit("@", 1)
    return f"'{user}'@'{host}'"


def audit_tables(connection: MySQLdb.Connection, database: str) -> list[str]:
    found = rows(
        connection,
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = %s AND table_name LIKE 'audit\\_%%' ORDER BY table_name",
        (database,),
    )
    return [table for (table,) in found]


def test_the_app_user_reads_the_audit_trail(runtime):
    (count,) = rows(runtime, "SELECT COUNT(*) FROM audit_auditevent")[0]
    assert count >= 0


def test_the_app_user_may_only_read_and_append_to_audit_tables(runtime, admin, database_name):
    granted = own_table_privileges(runtime, database_name)
    tables = audit_tables(admin, database_name)
    assert EVENTS in tables
    assert {table: granted.get(table) for table in tables} == {table: {"SELECT", "INSERT"} for table in tables}


def test_the_app_user_may_change_only_the_outcome_and_the_actor_of_an_event(runtime, database_name):
    found = rows(
        runtime,
        "SELECT table_name, column_name, privilege_type FROM information_schema.column_privileges"
        " WHERE grantee = %s AND table_schema = %s",
        (grantee(runtime), database_name),
    )
    assert sorted(found) == sorted((EVENTS, column, "UPDATE") for column in ("actor_id", *OUTCOME_FIELDS))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET decision = 'allow'",
        "UPDATE audit_auditevent SET path = '/', status = 200",
        "UPDATE audit_auditevent SET actor_username = '', actor_id = NULL",
        "UPDATE audit_auditevent SET occurred_at = occurred_at - INTERVAL 1 DAY",
        "UPDATE audit_auditevent SET id = id + 1000000000",
        "DELETE FROM audit_auditevent",
        "REPLACE INTO audit_auditevent SELECT * FROM audit_auditevent",
    ],
)
def test_the_app_user_cannot_rewrite_the_audit_trail(runtime, statement):
    assert refused(runtime, statement) in COMMAND_DENIED


def test_the_app_user_cannot_rewrite_any_audit_table(runtime, admin, database_name):
    for table in audit_tables(admin, database_name):
        (column,) = rows(
            admin,
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position LIMIT 1",
            (database_name, table),
        )[0]
        # Names from information_schema, not input.
        update, delete = f"UPDATE {table} SET {column} = {column}", f"DELETE FROM {table}"
        assert refused(runtime, update) in COMMAND_DENIED, table
        assert refused(runtime, delete) in COMMAND_DENIED, table


@pytest.fixture
def events_locked(admin) -> Iterator[None]:
    """The migration account holds a metadata lock on the events until the test ends."""
    rows(admin, "SELECT 1 FROM audit_auditevent LIMIT 1")
    yield
    admin.rollback()


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE TABLE audit_auditevent",
        "DROP TABLE audit_auditevent",
        "ALTER TABLE audit_auditevent ADD COLUMN tampered INT",
        "ALTER TABLE audit_auditevent DISABLE KEYS",
        "RENAME TABLE audit_auditevent TO audit_auditevent_old",
    ],
)
def test_the_app_user_cannot_truncate_drop_or_alter_the_audit_trail(runtime, events_locked, statement):
    rows(runtime, "SET SESSION lock_wait_timeout = 1")
    assert refused(runtime, statement) in COMMAND_DENIED


def test_the_app_user_may_clear_the_actor_of_an_event(runtime):
    # What Django does for on_delete=SET_NULL when a user is deleted.
    with runtime.cursor() as cursor:
        assert cursor.execute("UPDATE audit_auditevent SET actor_id = NULL WHERE id = -1") == 0


def test_the_app_user_may_write_the_outcome_of_an_attempt(runtime):
    # What AuditEvent.objects.record_outcome() does when a forwarded response is complete.
    assignments = ", ".join(f"{column} = {column}" for column in OUTCOME_FIELDS)
    update = f"UPDATE audit_auditevent SET {assignments} WHERE id = -1 AND completed_at IS NULL"
    with runtime.cursor() as cursor:
        assert cursor.execute(update) == 0


def test_the_app_user_may_change_the_other_tables(runtime):
    with runtime.cursor() as cursor:
        assert cursor.execute("UPDATE gateway_upstream SET name = name WHERE id = -1") == 0
        assert cursor.execute("DELETE FROM gateway_upstream WHERE id = -1") == 0


def test_every_table_is_granted_to_the_app_user_by_its_rule(runtime, admin, database_name):
    # Tables of later migrations are granted by the next deploy: none may be missing.
    granted = own_table_privileges(runtime, database_name)
    tables = [
        table
        for (table,) in rows(
            admin,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            (database_name,),
        )
    ]
    expected = {
        table: {"SELECT", "INSERT"} if table.startswith("audit_") else {"SELECT", "INSERT", "UPDATE", "DELETE"}
        for table in tables
    }
    assert granted == expected


def test_the_app_user_has_nothing_database_wide(runtime):
    grants = [grant for (grant,) in rows(runtime, "SHOW GRANTS")]
    assert grants[0].startswith("GRANT USAGE ON *.* TO ")
    assert not [grant for grant in grants if ".* TO " in grant and not grant.startswith("GRANT USAGE ON *.*")]
    assert (
        rows(runtime, "SELECT * FROM information_schema.schema_privileges WHERE grantee = %s", (grantee(runtime),))
        == []
    )


def test_the_app_user_cannot_create_tables(runtime, admin):
    try:
        assert refused(runtime, "CREATE TABLE tampered (id INT)") in COMMAND_DENIED
    finally:
        rows(admin, "DROP TABLE IF EXISTS tampered")


def test_the_migration_user_has_all_privileges_on_the_database(admin, database_name):
    grants = [grant for (grant,) in rows(admin, "SHOW GRANTS")]
    assert any(grant.startswith(f"GRANT ALL PRIVILEGES ON `{database_name}`.* TO ") for grant in grants), grants
