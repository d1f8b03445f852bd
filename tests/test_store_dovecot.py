"""The Maildir++ tree is Dovecot's format: Debian's Dovecot 2.3, pointed at a copy of a mailbox the
store wrote, shows the same folders, UIDVALIDITY, UIDNEXT, UIDs, flags and keywords."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from mailserver.app import App
from policy.loader import load
from storage import mutf7
from tests.test_store_rebuild import build_mailbox, state_of

DOVECOT_IMAP = "/usr/lib/dovecot/imap"  # Debian package dovecot-imapd (.ci/test-packages.txt)

CONFIG = """base_dir = {run}
log_path = /dev/stderr
ssl = no
protocols =
mail_location = maildir:{mb}:LAYOUT=Maildir++:INBOX={mb}
mail_plugins = listescape
plugin {{
  listescape_char = "\\\\"
}}
namespace inbox {{
  inbox = yes
  separator = /
  prefix =
}}
"""


def dovecot_view(tmp_path, tree) -> dict:
    """Run Dovecot's IMAP binary pre-authenticated over stdin/stdout on a copy of `tree`.
    `tmp_path` must be reachable by the user Dovecot runs as."""
    mb, run = tmp_path / "dovecot-mb", tmp_path / "dovecot-run"
    shutil.copytree(tree, mb)
    run.mkdir()
    conf = tmp_path / "dovecot.conf"
    conf.write_text(CONFIG.format(run=run, mb=mb), encoding="utf-8")
    command = ["env", "USER=test", f"HOME={mb}", DOVECOT_IMAP, "-c", str(conf)]
    if os.geteuid() == 0:  # Dovecot does not serve mail as root
        subprocess.run(["chown", "-R", "nobody:nogroup", str(mb), str(run)], check=True)
        command = ["runuser", "-u", "nobody", "--", *command]

    def session(lines: list[str]) -> str:
        script = "".join(f"t{i} {line}\r\n" for i, line in enumerate(lines)) + "z LOGOUT\r\n"
        proc = subprocess.run(command, input=script.encode(), capture_output=True, timeout=60)
        out = proc.stdout.decode("utf-8", "replace")
        assert "z OK" in out, out + proc.stderr.decode()
        return out

    listing = session(['LIST "" "*"'])
    names = []
    for line in listing.splitlines():
        m = re.match(r'^\* LIST \([^)]*\) "/" (.+)$', line.strip())
        if m:
            raw = m.group(1)
            names.append(mutf7.decode(raw[1:-1] if raw.startswith('"') else raw))
    view = {}
    for name in names:
        quoted = '"' + mutf7.encode(name) + '"'
        out = session([f"STATUS {quoted} (UIDVALIDITY UIDNEXT)", f"SELECT {quoted}", "UID FETCH 1:* (FLAGS)"])
        status = re.search(r"UIDNEXT (\d+) UIDVALIDITY (\d+)", out)
        flags = [(int(u), frozenset(f.split())) for u, f in re.findall(r"\(UID (\d+) FLAGS \(([^)]*)\)\)", out)]
        view[name] = (int(status.group(2)), int(status.group(1)), flags)
    return view


async def test_dovecot_reads_the_tree_with_the_same_uids_flags_and_keywords(config_file, clock):
    app = await App.open(loaded=load(config_file), clock=clock)
    try:
        acc = await build_mailbox(app)
        ours = await state_of(app, acc)
        tree = app.store.mailbox_path(acc)
    finally:
        await app.close()
    work = Path(tempfile.mkdtemp(prefix="store-dovecot-"))  # pytest's tmp is private to root; Dovecot runs as nobody
    try:
        work.chmod(0o755)
        theirs = dovecot_view(work, tree)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    selectable = [name for name, _use, _sub, sel in ours["folders"] if sel]
    assert sorted(theirs) == sorted(selectable)  # "Công việc/Năm 2026", "v1.0" (listescape) ...
    for name in selectable:
        uidvalidity, uidnext, messages, _keywords, _dates = ours[name]
        assert theirs[name] == (uidvalidity, uidnext, messages or []), name
