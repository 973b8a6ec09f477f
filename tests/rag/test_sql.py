"""Text-to-SQL (rag/sql.py): the guard, the read-only connection, the timeout, and ask() with scripted models."""
import json
import os
import sqlite3

import pytest

import llmkit as lk
from llmkit.core.types import Completion, Usage
from llmkit.models.base import Model
from llmkit.rag.sql import (
    RETRY_TEMPLATE,
    Database,
    SQLQueryError,
    UnsafeSQLError,
    ask,
    guard,
    run,
)

pytest.importorskip("sqlglot")


class Scripted(Model):
    """Answers from a list (as SQLAnswer JSON); records the messages it was sent."""

    provider = "scripted"
    supported = frozenset({"temperature", "max_tokens"})

    def __init__(self, sqls):
        super().__init__("scripted")
        self.replies = [json.dumps({"reasoning": "r", "sql": s}) for s in sqls]
        self.sent, self.constraint_kinds = [], frozenset()

    def _chat(self, messages, s, tools, tool_choice, constraint=None):
        self.sent.append(messages)
        text = self.replies.pop(0)
        return Completion(text=text, finish_reason="stop", usage=Usage(output_tokens=len(text)))


@pytest.fixture
def db_path(tmp_path):
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as c:
        c.executescript("""
            CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT);
            CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), total REAL);
            INSERT INTO users VALUES (1, 'Ada', 'London'), (2, 'Grace', 'New York'), (3, 'Linus', 'Helsinki'),
                                     (4, 'Barbara', 'Boston');
            INSERT INTO orders VALUES (1, 1, 10.5), (2, 1, 20.0), (3, 2, 7.25);
        """)
    c.close()
    return path


@pytest.fixture
def db(db_path):
    with Database(f"sqlite:///{db_path}") as d:
        yield d


def user_count(path):
    with sqlite3.connect(path) as c:
        return c.execute("SELECT COUNT(*) FROM users").fetchone()[0]


def test_schema_shows_tables_columns_types_and_sample_rows(db):
    text = db.schema(sample_rows=3)
    assert 'CREATE TABLE "users"' in text and 'CREATE TABLE "orders"' in text
    assert '"name" TEXT' in text and '"total" REAL' in text and '"user_id" INTEGER' in text
    assert "Ada\tLondon" in text and "Linus" in text and "Barbara" not in text  # 3 sample rows, not 4
    assert [t.name for t in db.tables()] == ["orders", "users"]
    assert db.sample_rows("users", 1) == [(1, "Ada", "London")]


@pytest.mark.parametrize("sql", [
    "DROP TABLE users",
    "UPDATE users SET name = 'x'",
    "DELETE FROM users",
    "INSERT INTO users (name) VALUES ('x')",
    "ATTACH DATABASE '/tmp/evil.db' AS evil",
    "PRAGMA journal_mode = WAL",
    "PRAGMA query_only = OFF",
    "SELECT 1; DROP TABLE users",
    "SELECT * FROM users; DELETE FROM users",
    "WITH x AS (DELETE FROM users RETURNING *) SELECT * FROM x",
    "SELECT * INTO copy FROM users",
    "CREATE TABLE t AS SELECT * FROM users",
    "ALTER TABLE users ADD COLUMN x INT",
    "VACUUM",
    "SELECT load_extension('/tmp/evil.so')",
    "SELECT writefile('/tmp/x', name) FROM users",
    "",
])
def test_guard_refuses_everything_but_one_select(sql):
    with pytest.raises(UnsafeSQLError) as e:
        guard(sql, "sqlite")
    assert isinstance(e.value, lk.ConfigError) and e.value.reason and "only a single SELECT" in str(e.value)


def test_guard_names_the_reason():
    with pytest.raises(UnsafeSQLError, match="2 stacked statements"):
        guard("SELECT 1; DROP TABLE users")
    with pytest.raises(UnsafeSQLError, match="DROP is not a SELECT"):
        guard("DROP TABLE users")
    with pytest.raises(UnsafeSQLError, match="contains DELETE"):
        guard("WITH x AS (DELETE FROM users RETURNING *) SELECT * FROM x")


@pytest.mark.parametrize("sql", [
    "SELECT name FROM users",
    "SELECT name FROM users;",
    "WITH big AS (SELECT user_id, SUM(total) AS s FROM orders GROUP BY user_id) SELECT * FROM big",
    "SELECT u.name, o.total FROM users u JOIN orders o ON o.user_id = u.id",
    "SELECT name FROM users UNION SELECT city FROM users",
])
def test_guard_accepts_reads(sql, db):
    out = guard(sql, "sqlite", row_limit=50)
    assert out.endswith("LIMIT 50")
    run(db, sql)  # and the database agrees it is valid


def test_limit_added_clamped_or_kept():
    assert guard("SELECT name FROM users", row_limit=10) == "SELECT name FROM users LIMIT 10"
    assert guard("SELECT name FROM users LIMIT 5000", row_limit=10) == "SELECT name FROM users LIMIT 10"
    assert guard("SELECT name FROM users LIMIT 3 OFFSET 1", row_limit=10) == "SELECT name FROM users LIMIT 3 OFFSET 1"


def test_guard_transpiles_to_the_database_dialect():
    assert guard("SELECT TOP 5 name FROM users", "sqlite", read="tsql") == "SELECT name FROM users LIMIT 5"
    assert guard("SELECT IFNULL(city, '?') FROM users", "postgres", read="sqlite") == \
        "SELECT COALESCE(city, '?') FROM users LIMIT 100"


def test_run_returns_rows_and_reports_truncation(db):
    r = run(db, "SELECT name FROM users ORDER BY id", row_limit=2)
    assert r.columns == ["name"] and r.rows == [("Ada",), ("Grace",)] and r.truncated
    assert r.sql == "SELECT name FROM users ORDER BY id LIMIT 2"
    r = run(db, "SELECT name FROM users ORDER BY id", row_limit=4)
    assert len(r.rows) == 4 and not r.truncated


def test_a_write_that_reaches_the_connection_still_fails(db, db_path):
    # The guard is bypassed on purpose: the connection itself is read-only (mode=ro), and stays so
    # even after the model's favourite escape hatch, turning query_only off.
    db.conn.execute("PRAGMA query_only = OFF")
    for sql in ["DROP TABLE users", "DELETE FROM users", "UPDATE users SET name = 'x'",
                "INSERT INTO users (name) VALUES ('x')", "CREATE TABLE t (x)"]:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db.conn.execute(sql)
    assert user_count(db_path) == 4


def test_engine_authorizer_refuses_what_the_guard_would(db, tmp_path, monkeypatch):
    # With the guard switched off, ATTACH (which could create a writable file) is still denied at run time.
    import llmkit.rag.sql as sqlmod

    monkeypatch.setattr(sqlmod, "_checked", lambda sql, read: __import__("sqlglot").parse_one(sql, read=read))
    monkeypatch.setattr(sqlmod, "_limited", lambda tree, n: tree)
    with pytest.raises(SQLQueryError, match="not authorized"):
        run(db, f"ATTACH DATABASE '{tmp_path / 'evil.db'}' AS evil")
    assert not (tmp_path / "evil.db").exists()


def test_timeout_aborts_a_slow_query(db):
    slow = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) "
            "SELECT SUM(i) FROM n")
    import time

    t0 = time.monotonic()
    with pytest.raises(SQLQueryError, match="timeout_s=0.3"):
        run(db, slow, timeout_s=0.3)
    assert time.monotonic() - t0 < 5
    assert run(db, "SELECT COUNT(*) FROM users").rows == [(4,)]  # the connection is still usable


def test_ask_refuses_a_drop_and_never_runs_it(db, db_path):
    m = Scripted(["DROP TABLE users", "DROP TABLE users"])
    with pytest.raises(UnsafeSQLError, match="DROP"):
        ask(m, db, "Delete everything")
    assert user_count(db_path) == 4 and len(m.sent) == 2


def test_ask_returns_the_rows_of_a_valid_select(db):
    m = Scripted([("SELECT u.name, SUM(o.total) AS spent FROM users u JOIN orders o ON o.user_id = u.id "
                   "GROUP BY u.name ORDER BY spent DESC")])
    r = ask(m, db, "How much did each user spend?")
    assert r.rows == [("Ada", 30.5), ("Grace", 7.25)] and r.columns == ["name", "spent"] and not r.truncated
    prompt = m.sent[0][-1].content
    assert "How much did each user spend?" in prompt and 'CREATE TABLE "orders"' in prompt and "Ada" in prompt


def test_ask_feeds_the_error_back_once(db):
    m = Scripted(["SELECT nme FROM users; DROP TABLE users", "SELECT nme FROM users", "SELECT name FROM users"])
    with pytest.raises(SQLQueryError, match="no such column: nme"):
        ask(m, db, "List users")
    _, second = m.sent
    retry = second[-1].content
    assert retry.startswith(RETRY_TEMPLATE.split("{")[0]) and "stacked statements" in retry
    assert json.loads(second[-2].content)["sql"].startswith("SELECT nme") and len(m.replies) == 1

    m = Scripted(["SELECT nme FROM users", "SELECT name FROM users ORDER BY id"])
    assert ask(m, db, "List users").rows[0] == ("Ada",)
    assert "no such column: nme" in m.sent[1][-1].content


def test_bad_urls_and_missing_files_are_config_errors(tmp_path):
    with pytest.raises(lk.ConfigError, match="expected sqlite:///"):
        Database("mysql://x/y")
    with pytest.raises(lk.ConfigError, match="no SQLite database"):
        Database(f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()  # mode=ro never creates the file


def test_duckdb_read_only_and_guarded(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    path = tmp_path / "shop.duckdb"
    c = duckdb.connect(str(path))
    c.execute("CREATE TABLE users (id INTEGER, name VARCHAR); INSERT INTO users VALUES (1, 'Ada'), (2, 'Grace')")
    c.close()
    with Database(f"duckdb:///{path}") as db:
        assert '"name" VARCHAR' in db.schema() and "Grace" in db.schema()
        assert run(db, "SELECT name FROM users ORDER BY id").rows == [("Ada",), ("Grace",)]
        with pytest.raises(UnsafeSQLError):
            run(db, "SELECT * FROM read_csv('/etc/passwd')")
        with pytest.raises(duckdb.Error, match="read-only"):
            db.conn.execute("DELETE FROM users")
        with pytest.raises(SQLQueryError, match="timeout_s=0.3"):
            run(db, "SELECT COUNT(*) FROM range(100000000000) a", timeout_s=0.3)


@pytest.fixture(scope="module")
def pg_url():
    """$LLMKIT_TEST_POSTGRES_URL when set, else a real PostgreSQL 16 started by the pgserver package."""
    psycopg = pytest.importorskip("psycopg")
    url = os.environ.get("LLMKIT_TEST_POSTGRES_URL")
    if url:
        psycopg.connect(url, connect_timeout=2).close()  # a URL that was given must work: fail, never skip
        yield url
        return
    pgserver = pytest.importorskip("pgserver", reason="no $LLMKIT_TEST_POSTGRES_URL and pgserver not installed")
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="llmkit-pgsql-")  # short: the unix socket path has a 107-byte limit
    server = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def test_postgres_read_only_and_timeout(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS llmkit_sql_users")
        c.execute("CREATE TABLE llmkit_sql_users (id int, name text); "
                  "INSERT INTO llmkit_sql_users VALUES (1, 'Ada'), (2, 'Grace')")
    with Database(pg_url) as db:
        assert "llmkit_sql_users" in db.schema() and "Grace" in db.schema()
        assert run(db, "SELECT name FROM llmkit_sql_users ORDER BY id").rows == [("Ada",), ("Grace",)]
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            db.conn.execute("DELETE FROM llmkit_sql_users")
        db.conn.rollback()
        with pytest.raises(UnsafeSQLError):
            run(db, "SELECT pg_sleep(10)")
        with pytest.raises(SQLQueryError, match="timeout_s=0.3"):
            run(db, "SELECT COUNT(*) FROM generate_series(1, 10000000000)", timeout_s=0.3)
    with psycopg.connect(pg_url, autocommit=True) as c:
        assert c.execute("SELECT COUNT(*) FROM llmkit_sql_users").fetchone()[0] == 2
        c.execute("DROP TABLE llmkit_sql_users")


@pytest.mark.integration
def test_embedded_model_answers_or_is_refused_clearly(tmp_path, embedded):
    path = tmp_path / "pets.db"
    with sqlite3.connect(path) as c:
        c.executescript("CREATE TABLE pets (name TEXT, species TEXT);"
                        "INSERT INTO pets VALUES ('Rex', 'dog'), ('Tom', 'cat'), ('Fido', 'dog');")
    c.close()
    with Database(f"sqlite:///{path}") as db:
        try:
            r = ask(embedded, db, "List the names of all pets.", row_limit=10)
        except (UnsafeSQLError, SQLQueryError) as e:
            assert str(e) and e.sql  # a clear refusal naming the SQL
        except lk.StructuredOutputError as e:  # the 135M model never finished an answer: said, with its text
            assert "SQLAnswer" in str(e) and e.text
        else:
            assert r.sql.upper().startswith(("SELECT", "WITH")) and len(r.rows) <= 10 and r.columns
    assert user_rows(path) == 3


def user_rows(path):
    with sqlite3.connect(path) as c:
        return c.execute("SELECT COUNT(*) FROM pets").fetchone()[0]
