"""SQLite through aiosqlite: WAL, versioned migrations, explicit transactions.

Both the directory and the per-account mail indexes are SQLite files. WAL lets
the CLI read and write while `serve` runs; `busy_timeout` makes a writer wait
for another process instead of failing. Schema versions live in
`PRAGMA user_version` and migrations are numbered SQL files applied in order
at open, so an upgrade never needs a manual step.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite


def migration_scripts(prefix: str) -> list[tuple[int, str]]:
    """`storage/migrations/<prefix>_NNNN_*.sql`, ordered by number."""
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        name = entry.name
        if name.startswith(prefix + "_") and name.endswith(".sql"):
            number = int(name[len(prefix) + 1 :].split("_", 1)[0])
            found.append((number, entry.read_text(encoding="utf-8")))
    return sorted(found)


def migrate_sync(conn: sqlite3.Connection, prefix: str) -> bool:
    """Apply `<prefix>_NNNN_*.sql` to a plain sqlite3 connection (stores run in worker threads);
    True when the database was new. Safe against another process migrating at the same time."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    fresh = current == 0
    for number, script in migration_scripts(prefix):
        if number <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] < number:
                for statement in _split_sql(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return fresh


class Database:
    """One aiosqlite connection with a write lock.

    aiosqlite runs each connection in one thread; coroutines sharing it must
    not interleave inside a transaction, so writes take `transaction()`.
    """

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._write = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, migrations: str, *, create: bool = True) -> Database:
        if not create and not path.exists():
            raise FileNotFoundError(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=10000")
        db = cls(conn, path)
        try:
            await db.migrate(migrations)
        except BaseException:
            await conn.close()  # aiosqlite's thread would otherwise keep the process alive
            raise
        return db

    async def migrate(self, prefix: str) -> int:
        async with self._write:
            current = (await self.fetchone("PRAGMA user_version"))[0]
            for number, script in migration_scripts(prefix):
                if number <= current:
                    continue
                await self.conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _split_sql(script):
                        await self.conn.execute(statement)
                    await self.conn.execute(f"PRAGMA user_version={number}")
                    await self.conn.execute("COMMIT")
                except BaseException:
                    await self.conn.execute("ROLLBACK")
                    raise
                current = number
            return current

    async def close(self) -> None:
        await self.conn.close()

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        async with self.conn.execute(sql, params) as cur:
            return await cur.fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self.conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (autocommit unless inside `transaction()`); returns lastrowid."""
        async with self.conn.execute(sql, params) as cur:
            return cur.lastrowid or 0

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        """BEGIN IMMEDIATE … COMMIT, serialised with other writers of this process."""
        async with self._write:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
            await self.conn.execute("COMMIT")


def _split_sql(script: str) -> list[str]:
    """Statements of a migration file: `--` comments removed, split on `;`
    (migration files keep semicolons out of string literals)."""
    code = "\n".join(ln.split("--", 1)[0] for ln in script.splitlines())
    return [stmt.strip() for stmt in code.split(";") if stmt.strip()]
