"""What the scheduler costs: one tick with nothing due, and the once-a-day run, for N mailboxes.

The scheduler runs every `jobs.interval` (15 minutes) in every worker; most
ticks find nothing to do, so their cost is planning alone (the directory is
read, every account's lock and password state computed). Once a day the
counters, the folder retention (every mailbox's Trash and Junk) and the log
retention run too. Prints medians of --runs runs; the 50-account run is the
baseline for a ratio.

    .venv/bin/python bench/jobs.py [--accounts 400] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mailserver.app import App
from mailserver.jobs import JobRunner
from policy.loader import load
from storage.directory import PersonRequest

POLICY = "passwords:\n  hashing:\n    argon2_time_cost: 1\n    argon2_memory_cost_kib: 1024\n"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def measure(accounts: int, runs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "policy.yaml").write_text(POLICY, encoding="utf-8")
        (base / "mailserver.yaml").write_text(f"paths:\n  data: {base / 'data'}\npolicy_file: policy.yaml\n",
                                              encoding="utf-8")
        clock = Clock(datetime(2027, 3, 1, 3, tzinfo=UTC))
        app = await App.open(loaded=load(base / "mailserver.yaml"), clock=clock)
        try:
            reqs = [PersonRequest(name=f"Người Dùng Số {i}", unit=None, password="Matkhau@123")
                    for i in range(accounts)]
            await app.directory.import_people(reqs, actor="bench")
            runner = JobRunner(app)
            await runner.run()  # the first run of the day: counters, retention, ... (not timed)
            ticks, days = [], []
            for _ in range(runs):
                clock.now += timedelta(minutes=15)
                t = time.perf_counter()
                await runner.run()
                ticks.append(time.perf_counter() - t)
            for _ in range(runs):
                clock.now += timedelta(days=1)
                t = time.perf_counter()
                await runner.run()
                days.append(time.perf_counter() - t)
            return statistics.median(ticks), statistics.median(days)
        finally:
            await app.close()


async def main(accounts: int, runs: int) -> None:
    base_tick, base_day = await measure(50, runs)
    tick, day = await measure(accounts, runs)
    print(f"{'mailboxes':>10} {'tick (nothing due)':>20} {'daily run':>12}")
    print(f"{50:>10} {base_tick * 1000:>17.0f} ms {base_day:>10.2f} s")
    print(f"{accounts:>10} {tick * 1000:>17.0f} ms {day:>10.2f} s")
    print(f"per mailbox: tick {tick / accounts * 1e6:.0f} µs, daily {day / accounts * 1000:.1f} ms; "
          f"ratio to 50 mailboxes: tick {tick / base_tick:.1f}x, daily {day / base_day:.1f}x")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accounts", type=int, default=400)
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    asyncio.run(main(a.accounts, a.runs))
