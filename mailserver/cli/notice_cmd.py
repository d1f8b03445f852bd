"""`mailserver notice maintenance|list|cancel|templates` (Đ8.1.c planned downtime, the notice texts)."""

from __future__ import annotations

import argparse
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mailserver.cli.common import Context, out, pairs, parse_moment, table
from mailserver.jobs import JobRunner
from mailserver.jobs.maintenance import MaintenanceJob
from mailserver.notices import BUILTIN, Notices, builtin_templates, day_vi, placeholders, template_path
from policy.calendar import local_date
from policy.deadlines import maintenance_lead, reminder_day
from policy.errors import ValidationFailed
from policy.units import parse_duration
from storage.maintenance import MaintenanceWindows, Window


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("notice", help="notices to every mailbox: planned maintenance (Đ8.1.c), the texts")
    nsub = p.add_subparsers(dest="notice_command", metavar="ACTION", required=True)
    m = nsub.add_parser(
        "maintenance", parents=parents, help="announce planned downtime to every mailbox (Đ8.1.c)",
        description="Đ8.1.c: users are told at least maintenance.user_notice_working_days (3) full working days "
        "before planned downtime: days strictly between today and the start day, without weekends and "
        "calendar.holidays, with calendar.working_saturdays. The notice (Vietnamese and English) goes to every "
        "mailbox at once, a reminder the day before.")
    m.add_argument("--start", required=True, help='local start, e.g. "2026-12-12 22:00"')
    m.add_argument("--duration", required=True, help="e.g. 3h, 90 minutes, 2 hours 30 minutes")
    m.add_argument("--reason", required=True, help="why the service stops (quoted in the notice)")
    m.add_argument("--force", metavar="REASON", help="announce although the notice period is too short; "
                   "the reason is recorded in the audit log")
    m.add_argument("--dry-run", action="store_true", help="check the dates and show the notice; record nothing")
    m.set_defaults(handler=maintenance)
    ls = nsub.add_parser("list", parents=parents, help="planned maintenance (--all: also past and cancelled)")
    ls.add_argument("--all", action="store_true")
    ls.set_defaults(handler=list_windows)
    c = nsub.add_parser("cancel", parents=parents, help="cancel planned maintenance; everyone told is told again")
    c.add_argument("id", type=int)
    c.add_argument("--reason", required=True)
    c.set_defaults(handler=cancel)
    t = nsub.add_parser("templates", parents=parents, help="the notice texts, their placeholders and which "
                        "file is used; --export DIR copies the built-in ones to edit")
    t.add_argument("--export", type=Path, metavar="DIR", help="copy the built-in templates here (existing files "
                   "are kept); then set paths.templates: DIR in mailserver.yaml")
    t.set_defaults(handler=templates)


def _length(text: str) -> int:
    try:
        d = parse_duration(text)
    except ValueError as e:
        raise ValidationFailed("duration", str(e)) from None
    if d.months or d.seconds <= 0:
        raise ValidationFailed("duration", f'"{text}" is not a length of downtime (use e.g. 3h, 90 minutes)')
    return d.seconds


async def maintenance(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    policy = app.policy
    now = app.clock()
    start = parse_moment(args.start, policy.tz, "start")
    end = start + timedelta(seconds=_length(args.duration))
    if start <= now:
        raise ValidationFailed("start", f"{start.astimezone(policy.tz):%Y-%m-%d %H:%M} is not in the future")
    lead = maintenance_lead(local_date(now, policy.tz), local_date(start, policy.tz),
                            policy.maintenance.user_notice_working_days, policy.calendar)
    forced = (args.force or "").strip() or None
    if args.force is not None and not forced:
        raise ValidationFailed("force", "give the reason the notice period cannot be kept")
    if not lead.sufficient and not forced:
        raise ValidationFailed(
            "start",
            f"only {lead.working_days} working days between today ({lead.notice_day:%d/%m/%Y}) and "
            f"{lead.start_day:%d/%m/%Y}; Đ8.1.c requires at least {lead.required}: the earliest start day is "
            f"{lead.earliest_start_day:%Y-%m-%d} (or --force REASON)")
    reminder = reminder_day(lead.start_day, policy.maintenance.reminder_days_before)
    if reminder is not None and reminder <= lead.notice_day:
        reminder = None
    info: dict[str, Any] = {
        "start": start.astimezone(policy.tz).isoformat(), "end": end.astimezone(policy.tz).isoformat(),
        "working_days": lead.working_days, "required": lead.required, "forced_reason": forced,
        "reminder_on": reminder.isoformat() if reminder else None,
    }
    if args.dry_run:
        job = MaintenanceJob(app, Notices(app.settings, policy, app.store, app.clock))
        probe = Window(0, start, end, args.reason, now, ctx.actor, lead.working_days, forced, None, None, None)
        notice = job.notices.notice("maintenance.txt", job.values(probe))
        info.update(recipients=len(await job.recipients()), subject=notice.subject,
                    parts={lang: text for lang, text in notice.parts})
        out(ctx, info, lambda: _describe(info) + f"\n\nSubject: {notice.subject}\n\n"
            + "\n".join(text for _, text in notice.parts) + "\n(dry run: nothing recorded or sent)")
        return 0
    window = await MaintenanceWindows(app.directory, app.clock).add(
        start, end, args.reason, working_days=lead.working_days, forced_reason=forced, actor=ctx.actor)
    report = await JobRunner(app).run(only=["maintenance"], trigger="cli")
    sent = [r for r in report.results if r.key == f"maintenance:{window.id}:announce"]
    info.update(id=window.id, delivered=sent[0].detail["delivered"] if sent and sent[0].detail else 0,
                announcement=sent[0].result if sent else "not sent")
    out(ctx, info, lambda: _describe(info) + f"\nmaintenance {window.id} announced to {info['delivered']} mailboxes")
    return 1 if report.failed else 0


def _describe(info: dict[str, Any]) -> str:
    rows = [("start", info["start"][:16].replace("T", " ")), ("end", info["end"][:16].replace("T", " ")),
            ("working days before", f"{info['working_days']} (Đ8.1.c requires {info['required']})")]
    if info["forced_reason"]:
        rows.append(("forced", info["forced_reason"]))
    rows.append(("reminder", info["reminder_on"] or "none"))
    return pairs(rows)


def _window_row(w: Window, now: datetime, tz: Any) -> dict[str, Any]:
    return {"id": w.id, "state": w.state(now), "start": w.start_at.astimezone(tz).isoformat(),
            "end": w.end_at.astimezone(tz).isoformat(), "reason": w.reason, "working_days": w.working_days,
            "forced_reason": w.forced_reason, "announced": day_vi(w.created_at.astimezone(tz).date()),
            "created_by": w.created_by, "cancel_reason": w.cancel_reason}


async def list_windows(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    windows = await MaintenanceWindows(app.directory, app.clock).list(include_past=args.all)
    now, tz = app.clock(), app.policy.tz
    data = [_window_row(w, now, tz) for w in windows]
    out(ctx, data, lambda: table(
        ["id", "state", "start", "end", "working days", "reason"],
        [(d["id"], d["state"], d["start"][:16].replace("T", " "), d["end"][:16].replace("T", " "),
          f"{d['working_days']}" + (" (forced)" if d["forced_reason"] else ""), d["reason"]) for d in data])
        if data else "no planned maintenance")
    return 0


async def cancel(ctx: Context, args: argparse.Namespace) -> int:
    app = await ctx.app()
    window = await MaintenanceWindows(app.directory, app.clock).cancel(args.id, args.reason, actor=ctx.actor)
    report = await JobRunner(app).run(only=["maintenance"], trigger="cli")
    sent = [r for r in report.results if r.key == f"maintenance:{window.id}:cancelled"]
    delivered = sent[0].detail["delivered"] if sent and sent[0].detail else 0
    data = {**_window_row(window, app.clock(), app.policy.tz), "delivered": delivered}
    out(ctx, data, f"maintenance {window.id} cancelled"
        + (f"; {delivered} mailboxes told" if sent else " (it had not been announced)"))
    return 1 if report.failed else 0


async def templates(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.loaded.settings
    copied = []
    if args.export:
        args.export.mkdir(parents=True, exist_ok=True)
        for name in builtin_templates():
            if not (args.export / name).exists():
                shutil.copyfile(BUILTIN / name, args.export / name)
                copied.append(name)
    data = []
    for name in builtin_templates():
        path = template_path(name, settings.paths.templates)
        data.append({"template": name, "file": str(path), "edited": path.parent != BUILTIN,
                     "placeholders": sorted(placeholders(path.read_text(encoding="utf-8")))})
    human = table(["template", "in use", "placeholders"],
                  [(d["template"], "edited copy" if d["edited"] else "built-in", " ".join(d["placeholders"]))
                   for d in data])
    if args.export:
        human += f"\n{len(copied)} copied to {args.export}; set paths.templates: {args.export} in mailserver.yaml"
    out(ctx, {"templates": data, "copied": copied}, human)
    return 0
