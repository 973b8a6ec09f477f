"""Text-to-SQL over SQLite, DuckDB and PostgreSQL, with a guard the model cannot talk its way past.

Three layers keep a model's SQL from changing anything:

1. ``guard`` parses the SQL with sqlglot and lets through exactly one read-only query (SELECT,
   UNION, WITH … SELECT), no write anywhere in the tree (data-modifying CTEs, ``SELECT … INTO``),
   no file- or server-touching function; it adds or clamps a ``LIMIT`` and transpiles to the
   database's dialect.
2. ``Database`` opens a read-only connection (SQLite ``mode=ro`` plus an authorizer during queries,
   DuckDB ``read_only=True``, PostgreSQL ``default_transaction_read_only``), so a write that got
   past the guard still fails in the engine.
3. ``run`` enforces a timeout (SQLite progress handler, DuckDB interrupt, PostgreSQL
   ``statement_timeout``) and a row limit.

Example:
    >>> import llmkit as lk
    >>> from llmkit.rag.sql import Database, ask
    >>> db = Database("sqlite:///shop.db")
    >>> print(db.schema())                      # what the model sees: CREATE TABLEs + sample rows
    >>> r = ask(lk.model(), db, "How many users are there?")
    >>> r.sql, r.columns, r.rows
    ('SELECT COUNT(*) FROM users LIMIT 100', ['COUNT(*)'], [(3,)])

Needs the ``rag`` extra (sqlglot); DuckDB and PostgreSQL need ``duckdb`` / ``psycopg``.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ..core.errors import ConfigError, LLMKitError
from ..core.types import assistant, user

DIALECTS = {"sqlite": "sqlite", "duckdb": "duckdb", "postgresql": "postgres", "postgres": "postgres"}

SQL_TEMPLATE = """You write one {dialect} SQL query that answers a question about this database.

{schema}

Rules: write a single read-only SELECT statement (WITH ... SELECT is fine). Use only the tables and \
columns above.

Question: {question}"""

RETRY_TEMPLATE = """That query was refused or failed: {error}
Write a corrected query: a single read-only SELECT statement."""


class UnsafeSQLError(ConfigError):
    """SQL the guard refuses: not exactly one read-only query. ``sql`` holds the offending text."""

    def __init__(self, reason: str, sql: str):
        self.reason, self.sql = reason, sql
        super().__init__(f"refused SQL ({reason}); only a single SELECT is allowed: {sql.strip()[:200]!r}")


class SQLQueryError(LLMKitError):
    """The database rejected a query that passed the guard, or it ran past the timeout."""

    def __init__(self, message: str, sql: str):
        self.sql = sql
        super().__init__(f"{message}: {sql.strip()[:200]!r}")


@dataclass
class SQLResult:
    sql: str  # the guarded SQL, in the database's dialect, as it ran (with the row limit)
    columns: list[str]
    rows: list[tuple]
    truncated: bool = False  # True: the query had more rows than the row limit


@dataclass
class Table:
    name: str
    columns: list[tuple[str, str]]  # (name, type)
    sample: list[tuple] = field(default_factory=list)


def _sqlglot():
    try:
        import sqlglot
    except ImportError:
        raise ConfigError("text-to-SQL needs sqlglot: pip install 'llmkit[rag]'") from None
    return sqlglot


# --------------------------------------------------------------------------------------------- guard

def _write_nodes(exp) -> tuple[type, ...]:
    # Any of these anywhere in the tree means the statement writes, changes settings or touches files.
    names = ["Insert", "Update", "Delete", "Merge", "Drop", "Create", "Alter", "AlterTable", "TruncateTable",
             "Command", "Pragma", "Attach", "Detach", "Copy", "Into", "Use", "Set", "Transaction", "Commit",
             "Rollback", "LoadData", "Grant", "Revoke", "Analyze", "Cache", "Uncache", "Export"]
    return tuple(t for n in names if isinstance(t := getattr(exp, n, None), type))


# Functions that read or write files, load code, or act on the server: refused even inside a SELECT.
DENIED_FUNCTIONS = frozenset({
    "load_extension", "readfile", "writefile", "edit", "fts3_tokenizer",                       # sqlite
    "read_csv", "read_csv_auto", "read_parquet", "read_json", "read_json_auto", "read_text",   # duckdb
    "read_blob", "read_ndjson", "glob", "parquet_scan", "sniff_csv", "query", "query_table",
    "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "lo_import", "lo_export",  # postgres
    "dblink", "dblink_exec", "set_config", "pg_sleep", "pg_terminate_backend", "pg_cancel_backend",
    "pg_reload_conf", "pg_advisory_lock", "nextval", "setval",
})


def _function_name(node) -> str:
    from sqlglot import exp

    return (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()


def _checked(sql: str, read: str):
    """Parse and check ``sql``; return the one query's sqlglot tree, or raise UnsafeSQLError."""
    sqlglot = _sqlglot()
    from sqlglot import exp

    try:
        statements = [s for s in sqlglot.parse(sql, read=read) if s is not None]  # a trailing ';' parses as None
    except sqlglot.errors.SqlglotError as e:
        raise UnsafeSQLError(f"cannot parse as {read} SQL: {str(e).splitlines()[0]}", sql) from None
    if not statements:
        raise UnsafeSQLError("empty", sql)
    if len(statements) > 1:
        raise UnsafeSQLError(f"{len(statements)} stacked statements", sql)
    tree = statements[0]
    query_types = tuple(t for t in (exp.Select, getattr(exp, "SetOperation", exp.Union), exp.Subquery))
    if not isinstance(tree, query_types):
        raise UnsafeSQLError(f"{tree.key.upper()} is not a SELECT", sql)
    for node in tree.walk():
        node = node[0] if isinstance(node, tuple) else node  # older sqlglot yields (node, parent, key)
        if isinstance(node, _write_nodes(exp)):
            raise UnsafeSQLError(f"contains {node.key.upper()}", sql)
        if isinstance(node, exp.Func) and _function_name(node) in DENIED_FUNCTIONS:
            raise UnsafeSQLError(f"calls {_function_name(node)}()", sql)
    if tree.args.get("into") or tree.find(exp.Into):
        raise UnsafeSQLError("SELECT ... INTO writes a table", sql)
    return tree


def _limited(tree, row_limit: int):
    from sqlglot import exp

    limit = tree.args.get("limit")
    value = limit.expression if isinstance(limit, exp.Limit) else None
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit() and int(value.this) <= row_limit:
        return tree  # the query's own, smaller limit stands
    return tree.limit(row_limit, copy=True)  # adds one, or replaces a larger or non-constant one


def guard(sql: str, dialect: str = "sqlite", row_limit: int = 100, read: str | None = None) -> str:
    """Return ``sql`` as a single, limited, read-only query in ``dialect``, or raise UnsafeSQLError.

    Args:
        sql: the SQL to check (usually a model's).
        dialect: the database's dialect, a sqlglot name: ``sqlite``, ``duckdb``, ``postgres``.
        row_limit: a ``LIMIT`` added when missing and clamped when larger.
        read: the dialect ``sql`` is written in (default: ``dialect``); the result is transpiled.

    Example:
        >>> guard("SELECT name FROM users", "sqlite", row_limit=10)
        'SELECT name FROM users LIMIT 10'
        >>> guard("SELECT 1; DROP TABLE users")
        Traceback (most recent call last):
        UnsafeSQLError: refused SQL (2 stacked statements); only a single SELECT is allowed: ...
    """
    if row_limit < 1:
        raise ConfigError(f"row_limit must be at least 1, got {row_limit}")
    return _limited(_checked(sql, read or dialect), row_limit).sql(dialect=dialect)


# ------------------------------------------------------------------------------------------ database

def _quote(name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def _short(value: Any, width: int = 60) -> str:
    text = repr(value) if isinstance(value, (bytes, bytearray)) else str(value)
    return text if len(text) <= width else text[:width - 3] + "..."


class Database:
    """A read-only connection to a SQLite, DuckDB or PostgreSQL database.

    Args:
        url: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``duckdb:///path.duckdb``, or
            ``postgresql://user:pass@host:5432/db``.

    Example:
        >>> db = Database("sqlite:///shop.db")
        >>> [t.name for t in db.tables()]
        ['orders', 'users']
        >>> run(db, "SELECT name FROM users").rows
        [('Ada',), ('Grace',)]
    """

    def __init__(self, url: str):
        self.url = url
        scheme, sep, rest = url.partition("://")
        self.kind = scheme.split("+")[0].lower()
        if not sep or self.kind not in DIALECTS:
            raise ConfigError(f"unknown database URL {url!r}: expected sqlite:///path.db, duckdb:///path "
                              "or postgresql://user@host/db")
        self.dialect = DIALECTS[self.kind]
        self._lock = threading.Lock()  # one query at a time per connection
        if self.kind == "sqlite":
            path = Path(rest.removeprefix("/"))  # sqlite:///rel.db, sqlite:////abs.db
            if not path.is_file():
                raise ConfigError(f"no SQLite database at {path} (from {url!r})")
            # mode=ro: the engine itself refuses writes; query_only closes the pragma route too.
            self.conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
            self.conn.execute("PRAGMA query_only = ON")
        elif self.kind == "duckdb":
            try:
                import duckdb
            except ImportError:
                raise ConfigError("duckdb:// URLs need duckdb: pip install duckdb") from None
            path = rest.removeprefix("/")
            if not Path(path).is_file():
                raise ConfigError(f"no DuckDB database at {path} (from {url!r})")
            self.conn = duckdb.connect(path, read_only=True)
        else:
            try:
                import psycopg
            except ImportError:
                raise ConfigError("postgresql:// URLs need psycopg: pip install 'psycopg[binary]'") from None
            self.conn = psycopg.connect(url.replace("postgres+psycopg://", "postgresql://"),
                                        options="-c default_transaction_read_only=on")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fetch(self, sql: str, params: tuple = ()) -> list[tuple]:
        # Internal, trusted queries (introspection) only; model SQL goes through run().
        with self._lock:
            if self.kind == "postgresql":
                with self.conn.cursor() as cur:
                    cur.execute(sql, params or None)
                    rows = cur.fetchall()
                self.conn.rollback()
                return rows
            return self.conn.execute(sql, params).fetchall()

    def tables(self, sample_rows: int = 3) -> list[Table]:
        """Every user table and view with its columns and types, and ``sample_rows`` rows of each."""
        if self.kind == "sqlite":
            names = [r[0] for r in self._fetch("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                                               "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
            tables = [Table(n, [(c[1], c[2] or "") for c in self._fetch(f"PRAGMA table_info({_quote(n)})")])
                      for n in names]
        else:
            rows = self._fetch("SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
                               "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
                               "ORDER BY table_schema, table_name, ordinal_position")
            by_name: dict[str, Table] = {}
            for schema, table, column, dtype in rows:
                name = table if schema in ("main", "public") else f"{schema}.{table}"
                by_name.setdefault(name, Table(name, [])).columns.append((column, dtype))
            tables = list(by_name.values())
        for t in tables:
            t.sample = self.sample_rows(t.name, sample_rows) if sample_rows else []
        return tables

    def sample_rows(self, table: str, n: int = 3) -> list[tuple]:
        """The first ``n`` rows of ``table``."""
        return self._fetch(f"SELECT * FROM {_quote(table)} LIMIT {int(n)}")

    def schema(self, sample_rows: int = 3) -> str:
        """The prompt text: a CREATE TABLE per table, then its first rows (as in Rajkumar et al., 2022)."""
        parts = []
        for t in self.tables(sample_rows):
            cols = ",\n".join(f"  {_quote(c)} {ty}".rstrip() for c, ty in t.columns)
            text = f"CREATE TABLE {_quote(t.name)} (\n{cols}\n);"
            if t.sample:
                lines = ["\t".join(c for c, _ in t.columns)] + ["\t".join(_short(v) for v in r) for r in t.sample]
                text += f"\n/*\n{len(t.sample)} rows from {t.name}:\n" + "\n".join(lines) + "\n*/"
            parts.append(text)
        return "\n\n".join(parts)


# ----------------------------------------------------------------------------------------------- run

def _sqlite_authorizer(action, *_):
    # Engine-level allow-list while model SQL runs: reading and functions only (no ATTACH, PRAGMA, writes).
    allowed = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
               getattr(sqlite3, "SQLITE_RECURSIVE", 33)}
    return sqlite3.SQLITE_OK if action in allowed else sqlite3.SQLITE_DENY


def _execute(db: Database, sql: str, fetch: int, timeout_s: float) -> tuple[list[str], list[tuple]]:
    if db.kind == "sqlite":
        deadline = time.monotonic() + timeout_s
        db.conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)  # non-zero aborts the query
        db.conn.set_authorizer(_sqlite_authorizer)
        try:
            cur = db.conn.execute(sql)
            return [d[0] for d in cur.description or ()], cur.fetchmany(fetch)
        except sqlite3.OperationalError as e:
            if "interrupted" in str(e) and time.monotonic() > deadline:
                raise SQLQueryError(f"query ran past timeout_s={timeout_s}", sql) from None
            raise SQLQueryError(f"SQLite error: {e}", sql) from None
        except sqlite3.DatabaseError as e:
            raise SQLQueryError(f"SQLite error: {e}", sql) from None
        finally:
            db.conn.set_authorizer(None)
            db.conn.set_progress_handler(None, 0)
    if db.kind == "duckdb":
        import duckdb

        timer = threading.Timer(timeout_s, db.conn.interrupt)  # DuckDB has no statement timeout of its own
        timer.start()
        try:
            cur = db.conn.execute(sql)
            return [d[0] for d in cur.description or ()], cur.fetchmany(fetch)
        except duckdb.Error as e:
            if not timer.is_alive():
                raise SQLQueryError(f"query ran past timeout_s={timeout_s}", sql) from None
            raise SQLQueryError(f"DuckDB error: {str(e).splitlines()[0]}", sql) from None
        finally:
            timer.cancel()
    import psycopg

    try:
        with db.conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            cur.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}")
            cur.execute(sql)
            return [d.name for d in cur.description or ()], cur.fetchmany(fetch)
    except psycopg.errors.QueryCanceled:
        raise SQLQueryError(f"query ran past timeout_s={timeout_s}", sql) from None
    except psycopg.Error as e:
        raise SQLQueryError(f"PostgreSQL error: {str(e).splitlines()[0]}", sql) from None
    finally:
        db.conn.rollback()  # nothing to keep; also ends the SET LOCALs


def run(db: Database, sql: str, row_limit: int = 100, timeout_s: float = 5.0, read: str | None = None) -> SQLResult:
    """Guard ``sql``, then run it on ``db`` with a row limit and a timeout.

    Raises:
        UnsafeSQLError: the guard refused it (nothing ran).
        SQLQueryError: the database refused it, or it ran past ``timeout_s``.

    Example:
        >>> run(db, "SELECT name FROM users ORDER BY name", row_limit=1)
        SQLResult(sql='SELECT name FROM users ORDER BY name LIMIT 1', columns=['name'], rows=[('Ada',)], truncated=True)
    """
    if row_limit < 1:
        raise ConfigError(f"row_limit must be at least 1, got {row_limit}")
    tree = _checked(sql, read or db.dialect)
    shown = _limited(tree, row_limit).sql(dialect=db.dialect)
    probe = _limited(tree, row_limit + 1).sql(dialect=db.dialect)  # one extra row tells us it was cut
    with db._lock:
        columns, rows = _execute(db, probe, row_limit + 1, timeout_s)
    return SQLResult(shown, columns, [tuple(r) for r in rows[:row_limit]], truncated=len(rows) > row_limit)


# ----------------------------------------------------------------------------------------------- ask

class SQLAnswer(BaseModel):
    reasoning: str = Field(max_length=300, description="one short sentence: which tables and columns answer the question")
    sql: str = Field(max_length=2000, description="one read-only SELECT statement")


def ask(model, db: Database, question: str, *, template: str = SQL_TEMPLATE, row_limit: int = 100,
        timeout_s: float = 5.0, max_tokens: int = 400) -> SQLResult:
    """Ask ``model`` for SQL that answers ``question``, guard it, run it; retry once with the error.

    The prompt is ``template`` filled with ``dialect``, ``schema`` (``db.schema()``) and ``question``;
    the model answers ``SQLAnswer`` JSON. A guard or database error is fed back once
    (``RETRY_TEMPLATE``); a second failure raises it.

    Example:
        >>> ask(lk.model(), Database("sqlite:///shop.db"), "Who ordered the most?").rows
        [('Ada', 3)]
    """
    messages = [user(template.format(dialect=db.dialect, schema=db.schema(), question=question))]
    for attempt in range(2):
        answer = model.json(messages, schema=SQLAnswer, temperature=0, max_tokens=max_tokens)
        try:
            return run(db, answer.sql, row_limit=row_limit, timeout_s=timeout_s)
        except (UnsafeSQLError, SQLQueryError) as e:
            if attempt:
                raise
            messages += [assistant(answer.model_dump_json()), user(RETRY_TEMPLATE.format(error=e))]
    raise AssertionError("unreachable")
