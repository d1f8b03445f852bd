"""The operator CLI end to end, as subprocesses, the way operators and scripts run it."""

import csv
import json

from tests.helpers import cli, cli_json

PW = "Matkhau@123"


def test_init_is_idempotent_and_prints_the_password_once(config_file):
    first = cli_json(config_file, "init")
    assert first["operator_mailbox"] == "stttt@phuyen.gov.vn"
    assert first["temporary_password"]
    assert first["certificate_state"].startswith("created self-signed")
    again = cli_json(config_file, "init")
    assert again["temporary_password"] is None and again["certificate_state"] == "present"


def test_unit_examples_of_d4_1(initialised):
    c = initialised
    assert cli_json(c, "unit", "add", "Tuy Hòa", "--kind", "district")["address"] == "tuyhoa@phuyen.gov.vn"
    cli(c, "unit", "add", "Phú Hòa", "--kind", "district", check=True)
    cli(c, "unit", "add", "Tuy An", "--kind", "district", check=True)
    assert cli_json(c, "unit", "add", "Hòa An", "--kind", "commune", "--parent", "phuhoa")["address"] == (
        "hoan.phuhoa@phuyen.gov.vn")
    assert cli_json(c, "unit", "add", "Phòng Nội vụ", "--kind", "subunit", "--parent", "tuyan")["address"] == (
        "pnv.tuyan@phuyen.gov.vn")
    assert cli_json(c, "unit", "add", "Trung tâm Công nghệ thông tin và Truyền thông", "--kind", "subunit",
                    "--parent", "stttt")["address"] == "ttcntttt.stttt@phuyen.gov.vn"
    assert cli_json(c, "unit", "add", "Sở Nội vụ", "--kind", "department", "--abbrev", "snv")["address"] == (
        "snv@phuyen.gov.vn")
    units = {u["address"] for u in cli_json(c, "unit", "list")}
    assert {"stttt@phuyen.gov.vn", "tuyhoa@phuyen.gov.vn", "pnv.tuyan@phuyen.gov.vn"} <= units
    show = cli_json(c, "unit", "show", "stttt")
    assert [s["address"] for s in show["subunits"]] == ["ttcntttt.stttt@phuyen.gov.vn"]
    human = cli(c, "unit", "list", check=True).stdout
    assert "Trung tâm Công nghệ thông tin và Truyền thông" in human  # diacritics intact


def test_account_add_follows_d4_2_and_prints_json(initialised):
    c = initialised
    args = ["account", "add", "--name", "Nguyễn Văn A", "--birth", "1979-03", "--unit", "stttt", "--role", "staff"]
    first = cli_json(c, *args, "--password", PW)
    assert first["address"] == "nguyenvana@phuyen.gov.vn"
    assert first["state"] == "active" and first["quota_bytes"] == 2 * 2**30
    second = cli_json(c, *args)
    assert second["address"] == "nguyenvana79@phuyen.gov.vn" and second["temporary_password"]
    assert second["must_change_password"] is True
    assert cli_json(c, *args)["address"] == "nguyenvana379@phuyen.gov.vn"
    full = cli(c, *args)
    assert full.returncode == 1
    assert full.stderr.strip() == (
        "error: address: every address the naming rule gives is taken (nguyenvana, nguyenvana79, "
        "nguyenvana379); choose one explicitly with --address")
    human = cli(c, "account", "add", "--name", "Trần Thị B", "--unit", "stttt", check=True).stdout
    assert "tranthib@phuyen.gov.vn" in human and "temporary password" in human


def test_bad_input_is_one_line_naming_the_field_and_changes_nothing(initialised):
    c = initialised
    cases = [
        (["account", "add", "--name", "Lê Văn C", "--unit", "nope"], "error: unit: no unit \"nope\""),
        (["account", "add", "--name", "Lê Văn C", "--birth", "1979-13"], "error: birth: \"1979-13\" is not a birth"),
        (["account", "add", "--name", "Lê Văn C", "--password", "weak"], "error: password: does not meet Đ9"),
        (["account", "retire", "stttt", "--date", "2027-02-30"], "error: date: \"2027-02-30\" is not a date"),
        (["account", "set-quota", "stttt", "1GiB"], "error: quota: 1 GiB is below the minimum of 2 GiB (Đ7.3.b)"),
        (["account", "set-quota", "stttt", "lots"], "error: quota: \"lots\" is not a size"),
        (["account", "show", "ghost"], "error: address: no account \"ghost\""),
        (["account", "show", "a@example.org"], "error: address: \"example.org\" is not a domain"),
        (["unit", "add", "Hòa An", "--kind", "commune"], "error: parent: a commune needs its district"),
    ]
    for args, message in cases:
        proc = cli(c, *args)
        assert proc.returncode == 1, args
        assert proc.stderr.startswith(message), (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    accounts = cli_json(c, "account", "list")
    assert [a["address"] for a in accounts] == ["stttt@phuyen.gov.vn"]


def test_lifecycle_commands_and_audit(initialised):
    c = initialised
    addr = cli_json(c, "account", "add", "--name", "Phạm Văn D", "--unit", "stttt", "--password", PW)["address"]
    s = cli_json(c, "account", "suspend", addr, "--reason", "mật khẩu bị lộ (Đ6.2.b)")
    assert s["state"] == "suspended" and s["may_receive"] and not s["may_login"]
    r = cli_json(c, "account", "restore", addr)
    assert r["state"] == "active" and r["password_state"] == "must-change" and r["temporary_password"]
    t = cli_json(c, "account", "retire", addr, "--date", "2027-03-15", "--now", "2027-03-15T08:00")
    assert t["state"] == "send-locked" and t["revoke_on"] == "2027-09-15"
    u = cli_json(c, "account", "update", addr, "--role", "leader", "--now", "2027-03-15T08:00")
    assert u["state"] == "active" and u["send_locked_on"] == "2027-04-15" and u["revoke_on"] == "2028-03-15"
    assert cli_json(c, "account", "show", addr, "--now", "2028-03-15T00:01")["state"] == "revoked"
    cli(c, "account", "set-quota", addr, "5GiB", check=True)
    assert cli_json(c, "account", "show", addr)["quota_bytes"] == 5 * 2**30
    pw = cli_json(c, "account", "passwd", addr, "--password-stdin", input="Moi@Matkhau456\n")
    assert pw["password_state"] == "ok"
    g = cli_json(c, "account", "grant", addr, "--send-as", "stttt")
    assert g["send_as"] == ["stttt@phuyen.gov.vn"]
    assert cli_json(c, "account", "revoke-grant", addr, "--send-as", "stttt")["send_as"] == []
    audit = cli_json(c, "audit", "list", "--target", addr)
    assert [e["action"] for e in audit][:3] == ["account.revoke-grant", "account.grant", "account.passwd"]
    assert all(e["actor"] == "cli:test-operator" for e in audit)
    cli_json(c, "account", "revoke", addr)
    assert cli_json(c, "account", "show", addr)["state"] == "revoked"


def test_aliases(initialised):
    c = initialised
    cli(c, "alias", "add", "vanphong", "stttt", check=True)
    assert {"address": "vanphong@phuyen.gov.vn", "target": "stttt@phuyen.gov.vn"} in cli_json(c, "alias", "list")
    assert cli(c, "alias", "add", "vanphong", "stttt").returncode == 1
    cli(c, "alias", "remove", "vanphong", check=True)
    assert cli(c, "alias", "remove", "vanphong").stderr.startswith("error: address: no alias")


def test_import_csv_all_or_nothing(initialised, tmp_path):
    c = initialised
    cli(c, "unit", "add", "Tuy An", "--kind", "district", check=True)
    cli(c, "unit", "add", "Phòng Nội vụ", "--kind", "subunit", "--parent", "tuyan", check=True)
    path = tmp_path / "people.csv"
    rows = [
        {"name": "Nguyễn Văn A", "birth": "1979-03", "unit": "pnv.tuyan", "role": "staff"},
        {"name": "Nguyễn Văn A", "birth": "1985-07", "unit": "pnv.tuyan", "role": "leader"},
        {"name": "Trần Thị Bích", "birth": "1990-01", "unit": "pnv.tuyan", "role": "staff"},
        {"name": "Lê Văn Cường", "birth": "1990-13", "unit": "pnv.tuyan", "role": "staff"},
    ]
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["name", "birth", "unit", "role"])
        w.writeheader()
        w.writerows(rows)
    bad = cli(c, "account", "import", str(path))
    assert bad.returncode == 1
    assert bad.stderr.strip() == (
        'error: row 4: birth: "1990-13" is not a birth date (use YYYY-MM) (nothing was imported)')
    assert cli_json(c, "account", "list", "--unit", "pnv.tuyan") == [
        a for a in cli_json(c, "account", "list", "--unit", "pnv.tuyan") if a["kind"] == "unit"]
    rows[3]["birth"] = "1990-12"
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["name", "birth", "unit", "role"])
        w.writeheader()
        w.writerows(rows)
    result = cli_json(c, "account", "import", str(path))
    assert [r["address"] for r in result] == [
        "nguyenvana@phuyen.gov.vn", "nguyenvana85@phuyen.gov.vn", "tranthibich@phuyen.gov.vn",
        "levancuong@phuyen.gov.vn"]
    assert all(r["temporary_password"] for r in result)


def test_directory_export_csv_and_html(initialised, tmp_path):
    c = initialised
    cli(c, "unit", "add", "Trung tâm Công nghệ thông tin và Truyền thông", "--kind", "subunit", "--parent",
        "stttt", check=True)
    cli(c, "account", "add", "--name", "Nguyễn Văn A", "--unit", "ttcntttt.stttt", "--password", PW, check=True)
    gone = cli_json(c, "account", "add", "--name", "Hồ Văn Mất", "--unit", "stttt", "--password", PW)["address"]
    cli(c, "account", "revoke", gone, check=True)
    text = cli(c, "directory", "export", "--unit", "stttt", "--format", "csv", check=True).stdout
    rows = list(csv.DictReader(text.splitlines()))
    assert [r["address"] for r in rows] == ["stttt@phuyen.gov.vn", "ttcntttt.stttt@phuyen.gov.vn",
                                            "nguyenvana@phuyen.gov.vn"]
    assert rows[2]["unit"] == "Trung tâm Công nghệ thông tin và Truyền thông"
    out = tmp_path / "danhba.html"
    cli(c, "directory", "export", "--unit", "stttt", "--format", "html", "--output", str(out), check=True)
    page = out.read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in page and "Nguyễn Văn A" in page and gone not in page
    assert 'name="viewport"' in page


def test_json_on_every_listing(initialised):
    c = initialised
    for args in (["unit", "list"], ["account", "list"], ["alias", "list"], ["audit", "list"],
                 ["account", "show", "stttt"], ["config", "check"], ["config", "show"]):
        json.loads(cli(c, *args, "--json", check=True).stdout)
    # --json also before the command
    assert json.loads(cli(c, "--json", "unit", "list", check=True).stdout)
