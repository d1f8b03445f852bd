"""`mailserver init`: data folders, a development certificate, the directory, the operators' mailbox."""

from __future__ import annotations

import argparse

from mailserver.cli.common import Context, out, pairs
from mailserver.tlsgen import write_self_signed
from storage.backup import refuse_half_restored


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "init",
        parents=parents,
        help="initialise the data directory (idempotent)",
        description="Create the data folders, a self-signed certificate if none is configured, the directory "
        "database, the operators' unit mailbox and postmaster@/abuse@/support@ (Đ5.2). Safe to run again.",
    )
    p.set_defaults(handler=run)


async def run(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.loaded.settings
    refuse_half_restored(settings.paths.data)
    for folder in (settings.paths.data, settings.paths.log_dir, settings.paths.tls_dir, settings.paths.mail_dir):
        folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    cert_state = "present"
    if not settings.cert_path.exists() or not settings.key_path.exists():
        if settings.tls.cert is None and settings.tls.key is None:
            names = write_self_signed(settings.cert_path, settings.key_path, settings.hostname, settings.domains)
            cert_state = "created self-signed for " + ", ".join(names)
        else:
            cert_state = f"MISSING: {settings.cert_path} / {settings.key_path} (configured in tls.cert/tls.key)"
    app = await ctx.app()
    ops = settings.operators
    created = await app.directory.ensure_operator_unit(ops.unit_name, ops.unit_abbrev, actor=ctx.actor)
    operator = await app.directory.postmaster_target()
    if operator is not None:
        await app.store.create_mailbox(operator)  # idempotent: also for data folders made before the store
    result = {
        "data": str(settings.paths.data),
        "directory": str(settings.paths.directory_db),
        "mail": str(settings.paths.mail_dir),
        "certificate": str(settings.cert_path),
        "certificate_state": cert_state,
        "operator_mailbox": operator.address if operator else None,
        "temporary_password": created.temporary_password if created else None,
    }
    lines = [
        ("data", result["data"]),
        ("directory", result["directory"]),
        ("mail", result["mail"]),
        ("certificate", f"{settings.cert_path} ({cert_state})"),
        ("operators", f"{result['operator_mailbox']} receives postmaster@, abuse@, support@"),
    ]
    if created and created.temporary_password:
        lines.append(("temporary password", f"{created.temporary_password}  (shown once; must be changed)"))
    out(ctx, result, pairs(lines))
    return 0
