"""Logins per second through the authentication service, with and without the cache.

Production argon2id cost (policy defaults). "Without cache" is every login
paying argon2 (a fresh client); "with cache" is Outlook/Thunderbird
reconnecting with the password they just used. Prints medians of --runs runs.

    .venv/bin/python bench/auth.py [--logins 60] [--concurrency 20] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from policy.model import Policy
from storage.auth import AuthService
from storage.directory import Directory, PersonRequest
from storage.limiter import BruteForceLimiter

PW = "Matkhau@123"


async def run(logins: int, concurrency: int, runs: int) -> None:
    policy = Policy()
    with tempfile.TemporaryDirectory() as tmp:
        d = await Directory.open(Path(tmp) / "d.sqlite3", policy, ["phuyen.gov.vn"])
        users = []
        for i in range(concurrency):
            acc = (await d.add_person(PersonRequest(name=f"Người Dùng {i}", unit=None, password=PW), actor="b"))
            users.append(acc.account.address)
        auth = AuthService(d, BruteForceLimiter(policy.auth, []), "https://x/account")

        async def burst() -> float:
            sem = asyncio.Semaphore(concurrency)

            async def one(i: int) -> None:
                async with sem:
                    r = await auth.authenticate(users[i % len(users)], PW, client_ip="127.0.0.1", protocol="bench")
                    assert r.ok, r

            t = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(logins)))
            return logins / (time.perf_counter() - t)

        cold, warm = [], []
        for _ in range(runs):
            auth._cache.clear()
            auth.cache_ttl = 0  # every login verifies argon2
            cold.append(await burst())
            auth.cache_ttl = policy.auth.cache_ttl.approx_seconds
            await burst()  # fill the cache
            warm.append(await burst())
        await d.close()
        d.hasher.close()
    h = policy.passwords.hashing
    print(f"argon2id t={h.argon2_time_cost} m={h.argon2_memory_cost_kib}KiB p={h.argon2_parallelism}; "
          f"{logins} logins, {concurrency} concurrent, median of {runs} runs")
    print(f"without cache: {statistics.median(cold):8.1f} logins/s   (runs: {', '.join(f'{x:.1f}' for x in cold)})")
    print(f"with cache:    {statistics.median(warm):8.1f} logins/s   (runs: {', '.join(f'{x:.0f}' for x in warm)})")
    print(f"ratio:         {statistics.median(warm) / statistics.median(cold):8.1f}x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logins", type=int, default=60)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    asyncio.run(run(a.logins, a.concurrency, a.runs))
