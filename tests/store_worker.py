"""A process that delivers many messages at once and prints every delivery the store confirmed.

Used by tests/test_store_crash.py, which SIGKILLs it mid-flight: each printed
line is a promise (SMTP would have said 250), so every one must survive.

    python -m tests.store_worker CONFIG TOTAL CONCURRENCY ADDRESS...
"""

from __future__ import annotations

import asyncio
import hashlib
import sys

from mailserver.app import App
from policy.loader import load


def crash_message(i: int) -> bytes:
    """Message number i: a few hundred bytes to 40 KiB, its number and length inside."""
    size = 300 + (i * 7919) % 40_000
    body = (f"tin nhắn số {i} " * (size // 20 + 1)).encode()[:size]
    return (f"From: gui{i}@example.vn\r\nSubject: Thư số {i}\r\nX-Test-Number: {i}\r\n"
            f"X-Test-Length: {size}\r\n\r\n").encode() + body


def folder_for(i: int) -> tuple[str, frozenset[str]]:
    return ("Sent", frozenset({"\\Seen"})) if i % 5 == 0 else ("INBOX", frozenset())


async def main(config: str, total: int, concurrency: int, addresses: list[str]) -> None:
    app = await App.open(loaded=load(config))
    accounts = [await app.directory.require_account(a) for a in addresses]
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        account = accounts[i % len(accounts)]
        data = crash_message(i)
        folder, flags = folder_for(i)
        async with sem:
            st = await app.store.deliver(account, data, folder=folder, flags=flags)
        sys.stdout.write(f"{account.address} {st.folder} {st.uid} {st.uidvalidity} {i} "
                         f"{hashlib.sha256(data).hexdigest()}\n")
        sys.stdout.flush()

    print("ready", flush=True)
    await asyncio.gather(*(one(i) for i in range(total)))
    await app.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]))
