"""The tools agree with the lock: pre-commit runs the venv's tools, and the lock is current."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from uv import find_uv_bin

from app import __version__
from scripts import audit

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ".venv/bin/"
LOCK_EXPORTS = sorted((ROOT / "requirements").glob("*.txt"))


def precommit_hooks() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every (repo, hook) pair of .pre-commit-config.yaml."""
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    return [(repo, hook) for repo in config["repos"] for hook in repo["hooks"]]


def uv(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the venv's uv in the project root."""
    return subprocess.run(
        [find_uv_bin(), *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def without_header(text: str) -> str:
    """A requirements file without the comment lines uv writes above the first requirement."""
    lines = text.splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "\n".join(lines)


class TestPreCommitUsesTheVenv:
    def test_every_hook_runs_a_venv_tool(self) -> None:
        hooks = precommit_hooks()
        assert hooks
        for repo, hook in hooks:
            # A remote hook repo pins its own tool version at `rev`, which drifts from the lock.
            assert repo["repo"] == "local", f"{hook['id']}: hooks come from `repo: local`"
            assert hook["language"] == "system", f"{hook['id']}: use `language: system`"
            tool = hook["entry"].split()[0]
            assert tool.startswith(VENV_BIN), f"{hook['id']}: entry must start with {VENV_BIN}"
            assert Path(sys.prefix, "bin", tool.removeprefix(VENV_BIN)).is_file(), (
                f"{hook['id']}: {tool} is not installed by the lock"
            )

    def test_every_make_lint_tool_has_a_hook(self) -> None:
        makefile = (ROOT / "Makefile").read_text()
        recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
        assert recipe is not None
        lint_tools = set(re.findall(r"\$\(BIN\)/([\w-]+)", recipe.group(1)))
        entries = [hook.get("entry", "") for _, hook in precommit_hooks()]
        hook_tools = {entry.split()[0].removeprefix(VENV_BIN) for entry in entries if entry}
        assert lint_tools, "make lint runs no venv tool"
        assert lint_tools <= hook_tools, "pre-commit lacks a hook for a tool `make lint` runs"


class TestLockIsCurrent:
    def test_uv_lock_matches_pyproject(self) -> None:
        result = uv("lock", "--check")
        assert result.returncode == 0, f"uv.lock is stale: run `make lock`\n{result.stderr}"

    @pytest.mark.parametrize("export", LOCK_EXPORTS, ids=lambda path: path.name)
    def test_requirements_file_matches_uv_lock(self, export: Path) -> None:
        text = export.read_text()
        # uv's header records the command that wrote the file: run it again.
        command = re.search(r"^#\s+uv (export .*)$", text, flags=re.MULTILINE)
        assert command is not None, f"{export.name} was not written by `make lock`"
        result = uv(*command.group(1).split(), "--quiet")
        assert result.returncode == 0, result.stderr
        assert without_header(result.stdout) == without_header(text), (
            f"{export.relative_to(ROOT)} differs from uv.lock: run `make lock`"
        )

    def test_exports_exist(self) -> None:
        assert [path.name for path in LOCK_EXPORTS] == ["build.txt", "dev.txt", "runtime.txt"]

    def test_pyproject_version_is_the_app_version(self) -> None:
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
        assert pyproject["project"]["version"] == __version__


class TestAuditAllowlist:
    def test_every_entry_is_complete(self) -> None:
        accepted, problems = audit.load_allowlist(dt.date(2026, 1, 1))
        assert problems == []
        assert "GHSA-wj6h-64fc-37mp" in accepted["pypi"]

    def test_an_entry_past_its_review_date_is_a_problem(self) -> None:
        _, problems = audit.load_allowlist(dt.date(2100, 1, 1))
        assert any("ecdsa" in problem and "has passed" in problem for problem in problems)

    def test_npm_findings_are_keyed_by_advisory(self) -> None:
        advisory = {
            "source": 1102341,
            "name": "example",
            "title": "Prototype pollution",
            "url": "https://github.com/advisories/GHSA-aaaa-bbbb-cccc",
            "range": "<1.2.3",
        }
        report = {
            "vulnerabilities": {
                "example": {"via": [advisory]},
                "parent": {"via": ["example"]},
            }
        }
        assert audit.npm_findings(report) == {
            "GHSA-aaaa-bbbb-cccc": "example <1.2.3: Prototype pollution"
        }
