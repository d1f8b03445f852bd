"""`mailserver dkim keygen`: a signing key per domain and the DNS record to publish (RFC 6376 §3.6)."""

from __future__ import annotations

import argparse

from mailserver.cli.common import Context, out, pairs, served_domain
from policy.errors import ValidationFailed


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dkim", help="DKIM signing keys of submitted mail")
    dsub = p.add_subparsers(dest="dkim_command", metavar="ACTION", required=True)
    k = dsub.add_parser("keygen", parents=parents, help="write a key and print the TXT record to publish",
                        description="Write <dkim.keys>/<domain>/<selector>.rsa.pem (or .ed25519.key) and print "
                        "the TXT record for <selector>._domainkey.<domain>. Submitted mail is signed with the "
                        "selector named in mailserver.yaml (dkim.selector).")
    k.add_argument("--domain", required=True)
    k.add_argument("--selector", required=True)
    k.add_argument("--type", choices=["rsa", "ed25519"], default="rsa")
    k.add_argument("--bits", type=int, default=2048, help="RSA key size (default 2048)")
    k.add_argument("--force", action="store_true", help="replace an existing key of that selector")
    k.set_defaults(handler=run_keygen)


async def run_keygen(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.loaded.settings
    domain = served_domain(settings.domains, args.domain)
    if not args.selector.replace("-", "").replace(".", "").isalnum():
        raise ValidationFailed("selector", f'"{args.selector}" is not a DNS label')
    if args.type == "rsa" and args.bits < 1024:
        raise ValidationFailed("bits", "RSA keys shorter than 1024 bits are not accepted (RFC 8301)")
    from smtp.signing import keygen  # dkimpy and PyNaCl load only for this command

    try:
        key = keygen(settings.dkim_keys, domain, args.selector, args.type, args.bits, args.force)
    except FileExistsError as e:
        raise ValidationFailed("selector", str(e)) from None
    active = args.selector == settings.dkim.selector
    data = {"key": str(key.path), "record_name": key.record_name, "record": key.record,
            "zone_line": key.zone_line(), "active_selector": active}
    note = ("mail is signed with this selector now" if active else
            f"set dkim.selector: {args.selector} in mailserver.yaml after publishing, then restart")
    out(ctx, data, pairs([("key", key.path), ("publish", key.record_name), ("TXT", key.record),
                          ("zone file", key.zone_line()), ("note", note)]))
    return 0
