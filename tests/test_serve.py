"""`mailserver serve` starts what exists, says so, and stops cleanly on SIGINT and SIGTERM."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, cli


def start(config):
    env = {**os.environ}
    env.pop("MAILSERVER_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "mailserver", "--config", str(config), "serve"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
    )


def wait_for(proc, text, timeout=30.0):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} not seen in:\n{''.join(seen)}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_starts_and_stops_cleanly(initialised, sig):
    proc = start(initialised)
    try:
        wait_for(proc, "ready:")
        proc.send_signal(sig)
        rest = proc.communicate(timeout=30)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, rest
    assert "stopped" in rest and "Traceback" not in rest
    logs = list((initialised.parent.parent / "data" / "log").glob("server-*.log"))
    assert logs and "stopped" in logs[0].read_text()


def test_serve_refuses_an_uninitialised_data_directory(config_file):
    proc = cli(config_file, "serve")
    assert proc.returncode == 1
    assert "run `mailserver init` first" in proc.stderr
