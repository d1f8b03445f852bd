"""`mailserver config check|show`."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from mailserver.cli.common import Context, out
from mailserver.notices import check_templates
from policy.errors import ConfigError
from policy.limits import message_size_limit
from policy.units import format_size


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="check or show the configuration")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    c = csub.add_parser("check", parents=parents, help="validate mailserver.yaml and policy.yaml",
                        description="Print every error with file, line and key (and of the edited notice "
                        "templates in paths.templates); exit status 1 on error.")
    c.set_defaults(handler=check)
    s = csub.add_parser("show", parents=parents, help="print the effective configuration (defaults included)")
    s.set_defaults(handler=show)


async def check(ctx: Context, args: argparse.Namespace) -> int:
    try:
        loaded = ctx.loaded
        problems = check_templates(loaded.settings.paths.templates)
        if problems:
            raise ConfigError(problems)
    except ConfigError as e:
        if ctx.json:
            print(json.dumps({"ok": False, "errors": [str(p) for p in e.problems]}, ensure_ascii=False, indent=2))
        else:
            for problem in e.problems:
                print(f"error: {problem}", file=sys.stderr)
        return 1
    files = [str(f) for f in (loaded.config_file, loaded.policy_file) if f is not None]
    result = {
        "ok": True,
        "files": files,
        "message_size_limit": message_size_limit(loaded.policy.attachments),
    }
    human = (
        ("ok: " + ", ".join(files) if files else "ok: no configuration file, built-in defaults")
        + f"\nSMTP SIZE / IMAP APPENDLIMIT: {format_size(result['message_size_limit'])} "
        f"(attachments up to {format_size(loaded.policy.attachments.max_total)}, Đ7.3.b)"
    )
    out(ctx, result, human)
    return 0


async def show(ctx: Context, args: argparse.Namespace) -> int:
    data = {
        "config_file": str(ctx.loaded.config_file) if ctx.loaded.config_file else None,
        "settings": ctx.loaded.settings.model_dump(mode="json"),
        "policy": ctx.loaded.policy.model_dump(mode="json"),
    }
    out(ctx, data, lambda: yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return 0
