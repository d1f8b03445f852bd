"""The design card's import direction: policy ← storage ← smtp, imap_gateway ← mailserver."""

import ast
from pathlib import Path

from tests.helpers import ROOT

PROJECT = {"policy", "storage", "smtp", "imap_gateway", "mailserver"}
ALLOWED = {
    "policy": {"policy"},
    "storage": {"policy", "storage"},
    "smtp": {"policy", "storage", "smtp"},
    "imap_gateway": {"policy", "storage", "imap_gateway"},
    "mailserver": PROJECT,
}
# policy holds pure rules: no sockets, no databases, no event loop, no subprocesses.
POLICY_FORBIDDEN = {"asyncio", "socket", "sqlite3", "aiosqlite", "subprocess", "aiohttp", "aiosmtpd"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_imports_point_one_way():
    problems = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            bad = (imports_of(path) & PROJECT) - allowed
            if bad:
                problems.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    assert problems == []


def test_policy_does_no_io():
    problems = []
    for path in sorted((ROOT / "policy").rglob("*.py")):
        bad = imports_of(path) & POLICY_FORBIDDEN
        if bad:
            problems.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    assert problems == []


def test_design_card_layout_exists():
    for name in ("mailserver", "smtp", "imap_gateway", "storage", "policy", "config", "tests"):
        assert (ROOT / name).is_dir(), name
    for name in ("pyproject.toml", "Dockerfile", "README.md", "Makefile", ".ci/run", "docs/architecture.md"):
        assert (ROOT / name).is_file(), name
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```")[1]
    assert "make run" in first_block and "make test" in first_block
    assert "make test" in (ROOT / ".ci" / "run").read_text()
