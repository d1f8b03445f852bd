"""`mailserver`: the operator's command line.

Each command group lives in its own module with a `register(sub, parents)`
function; this module only assembles them and turns errors into one-line
messages with exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from mailserver.cli import (
    accounts,
    aliases,
    audit,
    backup_cmd,
    config_cmd,
    directory_cmd,
    dkim_cmd,
    dns_cmd,
    health_cmd,
    init_cmd,
    jobs_cmd,
    log_cmd,
    migrate_cmd,
    notice_cmd,
    queue_cmd,
    quota_cmd,
    reindex_cmd,
    report_cmd,
    serve_cmd,
    spam_cmd,
    units,
)
from mailserver.cli.common import Context, Handler, common_options
from policy.errors import ConfigError, MailserverError
from storage.directory import ImportFailed

GROUPS = [init_cmd, config_cmd, serve_cmd, units, accounts, aliases, directory_cmd, audit, dns_cmd, quota_cmd,
          reindex_cmd, log_cmd, dkim_cmd, jobs_cmd, notice_cmd, report_cmd, queue_cmd, spam_cmd, migrate_cmd,
          health_cmd, backup_cmd]


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="mailserver",
        description="Mail server of the provincial government of Phú Yên (Decision 13/2020/QĐ-UBND).",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(sub, [common])
    return parser


async def _run(handler: Handler, args: argparse.Namespace) -> int:
    ctx = Context(args)
    try:
        return (await handler(ctx, args)) or 0
    finally:
        await ctx.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.parse_args([*(argv or sys.argv[1:]), "--help"])
        return 2
    try:
        return asyncio.run(_run(handler, args))
    except ConfigError as e:
        for problem in e.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    except ImportFailed as e:
        print(f"error: row {e.row}: {e.error.field}: {e.error.message} (nothing was imported)", file=sys.stderr)
        return 1
    except MailserverError as e:
        print(f"error: {e.field}: {e.message}" if e.field else f"error: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `mailserver account list | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
