"""Shared test helpers: a throw-away configuration and the CLI as a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# argon2 at production cost (~150 ms) would make the suite slow; the cost is a
# policy value, so tests set a cheap one. bench/auth.py measures the real cost.
FAST_HASHING = """\
passwords:
  hashing:
    argon2_time_cost: 1
    argon2_memory_cost_kib: 1024
    argon2_parallelism: 1
"""


# The built-in default is Debian's spamd on 127.0.0.1:783; tests talk only to the spamd they start
# (tests/spamd.py), so a configuration without a `spamd:` line has none.
NO_SPAMD = "spamd: {host: null, port: null}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(base: Path, *, policy: str = "", extra: str = "", ports: dict[str, int] | None = None) -> Path:
    """A mailserver.yaml + policy.yaml under `base`, data in base/data, every listener on a free loopback port."""
    etc = base / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    ports = ports or {}
    listeners = "\n".join(
        f"  {name}: {{host: 127.0.0.1, port: {ports.get(name) or free_port()}"
        + (", tls: false" if name == "web" else "")
        + "}"
        for name in ("smtp", "submission", "submissions", "imap", "imaps", "web")
    )
    (etc / "policy.yaml").write_text(FAST_HASHING + policy, encoding="utf-8")
    cfg = etc / "mailserver.yaml"
    cfg.write_text(
        f"""hostname: mail.phuyen.gov.vn
domains: [phuyen.gov.vn]
paths:
  data: ../data
listeners:
{listeners}
policy_file: policy.yaml
{extra}{NO_SPAMD if "spamd:" not in extra else ""}""",
        encoding="utf-8",
    )
    return cfg


def cli(config: Path, *args: str, input: str | None = None, check: bool = False,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `mailserver --config CONFIG ARGS...` as an operator would."""
    full_env = {**os.environ, "MAILSERVER_ACTOR": "test-operator", **(env or {})}
    full_env.pop("MAILSERVER_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "mailserver", "--config", str(config), *args],
        input=input, capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"mailserver {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc


def cli_json(config: Path, *args: str, input: str | None = None) -> Any:
    proc = cli(config, *args, "--json", input=input, check=True)
    return json.loads(proc.stdout)
