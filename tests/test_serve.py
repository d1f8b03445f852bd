"""`mailserver serve` starts what exists, says so, and stops cleanly on SIGINT and SIGTERM."""

import signal

import pytest

from tests.helpers import cli
from tests.server import ServerProcess


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_starts_and_stops_cleanly(initialised, sig):
    server = ServerProcess(initialised).start()
    try:
        assert "web listening on http://127.0.0.1:" in server.output
    finally:
        status = server.stop(sig)
    assert status == 0, server.output
    assert "stopped" in server.output and "Traceback" not in server.output
    logs = list((initialised.parent.parent / "data" / "log").glob("server-*.log"))
    assert logs and "stopped" in logs[0].read_text()


def test_serve_refuses_an_uninitialised_data_directory(config_file):
    proc = cli(config_file, "serve")
    assert proc.returncode == 1
    assert "run `mailserver init` first" in proc.stderr
