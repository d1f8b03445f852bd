"""`mailserver jobs run|status`: the scheduled jobs, once, at the real or a simulated time."""

from __future__ import annotations

import argparse

from mailserver.cli.common import Context, out, table
from mailserver.jobs import JOB_NAMES, JobRunner, RunReport


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("jobs", help="the regulation's calendar: retirement, inactivity, passwords, retention ...")
    jsub = p.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    r = jsub.add_parser(
        "run", parents=parents, help="run every job once, catching up on everything due",
        description="Run the scheduled jobs once at the current time (or --now), doing everything that is due "
        "and not yet done. The scheduler inside `mailserver serve` does the same every jobs.interval; running "
        "both at once is safe.")
    r.add_argument("--dry-run", action="store_true", help="list what would be done, do nothing")
    r.add_argument("--only", nargs="+", choices=JOB_NAMES, metavar="JOB",
                   help=f"only these jobs ({', '.join(JOB_NAMES)})")
    r.set_defaults(handler=run)
    s = jsub.add_parser("status", parents=parents, help="recent runs and failed actions")
    s.add_argument("--limit", type=int, default=10)
    s.set_defaults(handler=status)


def _report_table(report: RunReport) -> str:
    if not report.results:
        return "nothing is due"
    rows = [(r.job, r.rule, r.result, r.summary + (f" ({r.detail['error']})" if r.result == "failed" else ""))
            for r in report.results]
    footer = (f"\n{len(report.results)} actions would be done (dry run: nothing was changed)" if report.dry_run
              else f"\n{report.done} done, {report.failed} failed")
    return table(["job", "rule", "result", "action"], rows) + footer


async def run(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    report = await JobRunner(app).run(dry_run=args.dry_run, only=args.only, trigger="cli")
    data = {"now": report.now.astimezone(app.policy.tz).isoformat(), "dry_run": report.dry_run,
            "done": report.done, "failed": report.failed, "actions": [r.public() for r in report.results]}
    out(ctx, data, lambda: _report_table(report))
    return 1 if report.failed else 0


async def status(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    runner = JobRunner(app)
    tz = app.policy.tz
    runs = await runner.ledger.runs(args.limit)
    failed = await runner.ledger.actions(state="failed", limit=args.limit)
    data = {
        "runs": [{"id": r.id, "started_at": r.started_at.astimezone(tz).isoformat(),
                  "now": r.now.astimezone(tz).isoformat(), "trigger": r.trigger, "dry_run": r.dry_run,
                  "done": r.done, "failed": r.failed} for r in runs],
        "failed_actions": [{"key": a.key, "job": a.job, "rule": a.rule, "target": a.target,
                            "attempts": a.attempts, "at": a.at.astimezone(tz).isoformat(), "error": a.detail}
                           for a in failed],
    }

    def human() -> str:
        text = table(["run", "started", "at (jobs' clock)", "trigger", "done", "failed"],
                     [(r["id"], r["started_at"][:19], r["now"][:16], r["trigger"] + (" (dry)" if r["dry_run"] else ""),
                       r["done"], r["failed"]) for r in data["runs"]])
        if data["failed_actions"]:
            text += "\n\nfailed actions (retried by every run):\n" + table(
                ["key", "attempts", "last", "error"],
                [(a["key"], a["attempts"], a["at"][:16], (a["error"] or {}).get("error", "")) for a in
                 data["failed_actions"]])
        return text

    out(ctx, data, human)
    return 0
