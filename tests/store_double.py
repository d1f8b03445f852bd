"""TEMPORARY: a minimal Maildir writer with the store's contract (/work/STORE_API.md) for the SMTP tests
until the real store (issue 4) lands on main; then the fixture uses `app.store` and this file goes."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from policy.limits import check_quota


class OverQuota(Exception):
    def __init__(self, address: str, used: int, quota: int, needed: int) -> None:
        super().__init__(f"{address} full")
        self.used, self.quota, self.needed = used, quota, needed


class StoreDouble:
    def __init__(self, root: Path, directory: Any) -> None:
        self.root = root
        self.directory = directory
        self.n = 0

    def mailbox_path(self, account: Any) -> Path:
        return self.root / account.domain / account.local_part

    def _used(self, account: Any) -> int:
        base = self.mailbox_path(account)
        return sum(p.stat().st_size for p in base.rglob("*") if p.is_file() and p.parent.name in ("new", "cur"))

    async def check_quota(self, account: Any, incoming: int) -> Any:
        return check_quota(self._used(account), await self.directory.quota_of(account), incoming)

    async def deliver(self, account: Any, message: bytes, *, folder: str = "INBOX", system: bool = False) -> Any:
        r = (await self.deliver_many([account], message, folder=folder, system=system))[account.id]
        if isinstance(r, Exception):
            raise r
        return r

    async def deliver_many(self, accounts: list[Any], message: bytes, *, folder: str = "INBOX",
                           system: bool = False) -> dict[int, Any]:
        out: dict[int, Any] = {}
        for a in accounts:
            q = await self.check_quota(a, len(message))
            if not q.fits and not system:
                out[a.id] = OverQuota(a.address, q.used, q.quota, len(message))
                continue
            base = self.mailbox_path(a) if folder == "INBOX" else self.mailbox_path(a) / ("." + folder)
            for sub in ("tmp", "new", "cur"):
                (base / sub).mkdir(parents=True, exist_ok=True)
            self.n += 1
            name = f"{time.time_ns()}.{os.getpid()}_{self.n}.test"
            tmp = base / "tmp" / name
            with open(tmp, "wb") as f:
                f.write(message)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, base / "new" / name)
            fd = os.open(base / "new", os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            out[a.id] = "stored"
        return out
