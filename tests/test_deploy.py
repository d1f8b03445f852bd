"""The deployment files agree with the server they deploy (issue 11).

The image itself is built and run by `make container-check`
(tests/container_check.py). These tests cover what that cannot: the
systemd unit (verified by systemd itself), the first-start configuration
of the container (each environment variable, through the real loader),
and compose.yaml, which needs images from a registry to run: its ports,
volumes and the clamd link must match the Dockerfile and the configuration.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from policy.loader import load
from policy.settings import Settings
from tests.helpers import ROOT

DEFAULT_PORTS = {listener.port for _, listener in Settings().listeners.items()}


def first_config() -> ModuleType:
    spec = importlib.util.spec_from_file_location("first_config", ROOT / "deploy" / "container" / "first-config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_systemd_unit_verifies_and_names_what_the_server_needs(tmp_path: Path):
    systemd_analyze = shutil.which("systemd-analyze")
    assert systemd_analyze, "systemd-analyze is missing (Debian package systemd, .ci/test-packages.txt)"
    unit = (ROOT / "deploy" / "mailserver.service").read_text()
    # the unit names /opt/mailserver; verify it against this checkout's executable
    local = tmp_path / "mailserver.service"
    local.write_text(unit.replace("/opt/mailserver/bin/mailserver", str(ROOT / ".venv" / "bin" / "mailserver")))
    proc = subprocess.run([systemd_analyze, "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    settings = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    assert settings["User"] == "mailserver"
    assert settings["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"  # 25, 143, 443, 465, 587, 993
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert settings["KillSignal"] == "SIGTERM"
    assert int(settings["TimeoutStopSec"]) > Settings().shutdown_grace
    assert settings["ReadWritePaths"] == str(Settings().paths.data)


def test_first_start_configuration_from_the_environment(tmp_path: Path):
    fc = first_config()
    template = (ROOT / "config" / "mailserver.yaml").read_text()
    text = fc.configure(template, {"MAILSERVER_HOSTNAME": "mail.tuyhoa.phuyen.gov.vn",
                                   "MAILSERVER_DOMAINS": "phuyen.gov.vn, tuyhoa.phuyen.gov.vn",
                                   "MAILSERVER_CLAMD": "clamav:3310"})
    assert text.count("#") == template.count("#")  # every comment kept
    (tmp_path / "mailserver.yaml").write_text(text)
    (tmp_path / "policy.yaml").write_text((ROOT / "config" / "policy.yaml").read_text())
    s = load(tmp_path / "mailserver.yaml").settings
    assert s.hostname == "mail.tuyhoa.phuyen.gov.vn"
    assert s.domains == ["phuyen.gov.vn", "tuyhoa.phuyen.gov.vn"]
    assert (s.clamd.host, s.clamd.port, s.clamd.socket) == ("clamav", 3310, None)
    assert (s.spamd.host, s.spamd.port) == ("127.0.0.1", 783)  # MAILSERVER_SPAMD not given: the template's

    for value, expected in (("spamd:783", ("spamd", 783, None)), ("none", (None, None, None)),
                            ("/run/spamd/spamd.sock", (None, None, Path("/run/spamd/spamd.sock")))):
        (tmp_path / "mailserver.yaml").write_text(fc.configure(template, {"MAILSERVER_SPAMD": value}))
        spamd = load(tmp_path / "mailserver.yaml").settings.spamd
        assert (spamd.host, spamd.port, spamd.socket) == expected, value

    socket = fc.configure(template, {"MAILSERVER_CLAMD": "/run/clamav/other.ctl"})
    (tmp_path / "mailserver.yaml").write_text(socket)
    assert load(tmp_path / "mailserver.yaml").settings.clamd.socket == Path("/run/clamav/other.ctl")
    assert fc.configure(template, {}) == template  # nothing given: the template as it is

    with pytest.raises(SystemExit, match="neither /a/socket nor host:port"):
        fc.configure(template, {"MAILSERVER_CLAMD": "clamav"})
    with pytest.raises(SystemExit, match="MAILSERVER_SPAMD='spamd' is neither"):
        fc.configure(template, {"MAILSERVER_SPAMD": "spamd"})
    with pytest.raises(SystemExit, match="no hostname"):
        fc.configure("domains:\n  - x.vn\n", {"MAILSERVER_HOSTNAME": "a.b"})


def test_compose_file_matches_the_image_and_the_configuration(tmp_path: Path):
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    server, clamav = services["mailserver"], services["clamav"]
    assert server["build"] == "."
    assert clamav["image"].startswith("docker.io/clamav/clamav:")  # the official image (freshclam inside)
    assert services["spamd"]["profiles"] == ["spam"]  # optional

    published = {int(p.split(":")[-1]) for p in server["ports"]}
    dockerfile = (ROOT / "Dockerfile").read_text()
    expose = re.search(r"^EXPOSE (.+)$", dockerfile, re.M)
    assert expose is not None
    exposed = {int(p) for p in expose.group(1).split()}
    assert published == exposed == DEFAULT_PORTS

    declared = set(compose["volumes"])
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source in declared, f"{name}: volume {source} is not declared"
    mounted = {m.split(":")[1] for m in server["volumes"]}
    volume = re.search(r"^VOLUME \[(.+)\]$", dockerfile, re.M)
    assert volume is not None
    image_volumes = set(re.findall(r'"(/[^"]+)"', volume.group(1)))
    assert image_volumes == {"/var/lib/mailserver", "/etc/mailserver"} <= mounted

    # the configuration written at the first start reaches clamav over the compose network
    env = {k: str(v) for k, v in server["environment"].items()}
    template = (ROOT / "config" / "mailserver.yaml").read_text()
    (tmp_path / "mailserver.yaml").write_text(first_config().configure(template, env))
    (tmp_path / "policy.yaml").write_text((ROOT / "config" / "policy.yaml").read_text())
    settings = load(tmp_path / "mailserver.yaml").settings
    assert settings.clamd.host in services and settings.clamd.port == 3310
    assert settings.spamd.host is None  # spamd is optional (profile "spam"): off unless MAILSERVER_SPAMD names it
    assert settings.hostname == server["hostname"]

    grace = int(str(server["stop_grace_period"]).rstrip("s"))
    assert grace > settings.shutdown_grace  # the drain finishes before the runtime's SIGKILL
    assert "depends_on" in server and server["depends_on"]["clamav"]["condition"] == "service_healthy"


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck():
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert stages == ["python:3.11-slim", "python:3.11-slim"]
    assert re.search(r"^USER mailserver$", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*mailserver\", \"healthcheck\"", dockerfile, re.M)
    assert 'ENTRYPOINT ["/usr/local/bin/mailserver-entrypoint"]' in dockerfile
    # the build context carries only what the image needs (.venv would be copied otherwise)
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:] and "!.venv" not in ignore
