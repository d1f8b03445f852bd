"""First start of the container: write the commented configuration templates into an empty /etc/mailserver.

Called by entrypoint.sh only when mailserver.yaml does not exist yet. A few
values that differ between installations can be given as environment
variables, so that `compose.yaml` or a `podman run -e` line sets them once
(later starts never touch the file; edit it instead):

    MAILSERVER_HOSTNAME   the mail host name (greetings, certificate, autoconfig)
    MAILSERVER_DOMAINS    mail domains, comma separated, the primary first
    MAILSERVER_CLAMD      clamd: a unix socket path, or host:port (compose: clamav:3310)
    MAILSERVER_SPAMD      spamd: a unix socket path, host:port (compose: spamd:783), or `none`;
                          unset means none here: the template's 127.0.0.1:783 is the
                          container itself, where no spamd runs

The templates keep every comment; only the lines named below change, and
if a template no longer has them this fails loudly rather than writing a
configuration nobody asked for. `mailserver config check` runs afterwards
(entrypoint.sh), so a bad value stops the first start with the file, line
and key.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

TEMPLATES = Path("/usr/share/mailserver/config")
FILES = ("mailserver.yaml", "policy.yaml")


def _replace(text: str, pattern: str, new: str, what: str) -> str:
    result, n = re.subn(pattern, new, text, count=1, flags=re.M)
    if n != 1:
        raise SystemExit(f"first-config: the template has no {what} to set; edit mailserver.yaml by hand")
    return result


def configure(template: str, env: dict[str, str]) -> str:
    """The template with the values given in `env` (see the module docstring)."""
    text = template
    if env.get("MAILSERVER_HOSTNAME"):
        text = _replace(text, r"^hostname: .*$", f"hostname: {env['MAILSERVER_HOSTNAME'].strip()}", "hostname")
    if env.get("MAILSERVER_DOMAINS"):
        domains = [d.strip() for d in env["MAILSERVER_DOMAINS"].split(",") if d.strip()]
        block = "domains:\n" + "".join(f"  - {d}\n" for d in domains)
        text = _replace(text, r"^domains:\n(?:  - .*\n)+", block, "domains list")
    if env.get("MAILSERVER_CLAMD"):
        line = _address("MAILSERVER_CLAMD", env["MAILSERVER_CLAMD"])  # host and port replace the socket
        text = _replace(text, r"^  socket: /run/clamav/clamd\.ctl$", line, "clamd socket line")
    if env.get("MAILSERVER_SPAMD"):
        value = env["MAILSERVER_SPAMD"].strip()
        lines = "  host: null\n  port: null" if value.lower() == "none" else _address("MAILSERVER_SPAMD", value)
        text = _replace(text, r"^  host: 127\.0\.0\.1\n  port: 783$", lines, "spamd host and port lines")
    return text


def _address(name: str, value: str) -> str:
    """`/a/socket` or `host:port` as the lines of a clamd:/spamd: section."""
    value = value.strip()
    if value.startswith("/"):
        return f"  socket: {value}"
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"first-config: {name}={value!r} is neither /a/socket nor host:port")
    return f"  host: {host}\n  port: {port}"


def main(target_dir: str) -> int:
    target = Path(target_dir)
    for name in FILES:
        text = (TEMPLATES / name).read_text(encoding="utf-8")
        if name == "mailserver.yaml":
            env = dict(os.environ)
            if not env.get("MAILSERVER_SPAMD"):
                env["MAILSERVER_SPAMD"] = "none"
                print("first start: no spamd (MAILSERVER_SPAMD not set): mail is not scored for spam; set "
                      "spamd: in mailserver.yaml and restart to turn it on (docs/operations.md)")
            text = configure(text, env)
        path = target / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    print(f"first start: wrote {target}/mailserver.yaml and policy.yaml from the templates "
          "(edit them, then restart; see docs/operations.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
