"""`mailserver serve`."""

from __future__ import annotations

import argparse
import logging

from mailserver.cli.common import Context
from mailserver.logsetup import setup_logging
from policy.errors import MailserverError
from storage.backup import refuse_half_restored


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", parents=parents, help="run the mail server (all listeners) until stopped",
                       description="Start every service in one process; SIGTERM or Ctrl-C stops cleanly.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(handler=run)


async def run(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.loaded.settings  # an invalid configuration stops here, before anything starts
    if not settings.paths.directory_db.exists():
        raise MailserverError("paths.data", f"{settings.paths.data} is not initialised; run `mailserver init` first")
    refuse_half_restored(settings.paths.data)
    setup_logging(settings.paths.log_dir, ctx.loaded.policy.tz, getattr(logging, args.log_level))
    logging.getLogger("mailserver").info(
        "configuration: %s", ctx.loaded.config_file or "built-in defaults"
    )
    # imported here: every protocol and the web stack load only for `serve`, not for each CLI command
    from mailserver.serve import serve

    app = await ctx.app()
    await serve(app)
    return 0
