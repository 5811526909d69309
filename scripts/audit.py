"""Audit the locked dependencies: pip-audit on requirements/*.txt, npm audit on package-lock.json.

The advisories accepted in audit-allowlist.toml are ignored; any other finding fails the run, and
so does an accepted advisory past its review date. A service that cannot be reached fails too:
an audit that did not run never passes. Run it as `make audit`.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ALLOWLIST = ROOT / "audit-allowlist.toml"
ECOSYSTEMS = ("pypi", "npm")
FIELDS = ("ecosystem", "package", "id", "reason", "review_by")


def load_allowlist(today: dt.date) -> tuple[dict[str, set[str]], list[str]]:
    """Accepted advisory IDs (with aliases) per ecosystem, and what is wrong with the list."""
    accepted: dict[str, set[str]] = {ecosystem: set() for ecosystem in ECOSYSTEMS}
    problems: list[str] = []
    for entry in tomllib.loads(ALLOWLIST.read_text()).get("advisory", []):
        name = f"{entry.get('id')} ({entry.get('package')})"
        missing = [field for field in FIELDS if not entry.get(field)]
        if missing or entry["ecosystem"] not in ECOSYSTEMS:
            problems.append(f"{name}: needs {', '.join(FIELDS)}; ecosystem one of {ECOSYSTEMS}")
            continue
        if not isinstance(entry["review_by"], dt.date) or entry["review_by"] < today:
            problems.append(f"{name}: review date {entry['review_by']} has passed")
        accepted[entry["ecosystem"]].update([entry["id"], *entry.get("aliases", [])])
    return accepted, problems


def audit_python(accepted: set[str]) -> bool:
    """Run pip-audit on every lock export, offline from pip, ignoring the accepted IDs."""
    command = [sys.executable, "-m", "pip_audit", "--strict", "--disable-pip", "--require-hashes"]
    command += ["--progress-spinner", "off", "--desc", "on"]
    for export in sorted((ROOT / "requirements").glob("*.txt")):
        command += ["-r", str(export.relative_to(ROOT))]
    for advisory in sorted(accepted):
        command += ["--ignore-vuln", advisory]
    print("+ pip-audit", " ".join(command[3:]), flush=True)
    if subprocess.run(command, cwd=ROOT).returncode == 0:
        return True
    # --strict makes a package the service could not look up fail, instead of a silent skip.
    print("pip-audit FAILED: a finding above, or the vulnerability service was not reachable")
    return False


def npm_findings(report: dict[str, Any]) -> dict[str, str]:
    """Advisory ID -> one-line description, from `npm audit --json` (format 2)."""
    findings: dict[str, str] = {}
    for vulnerability in report["vulnerabilities"].values():
        for via in vulnerability["via"]:
            if isinstance(via, dict):  # a string only names the dependency it comes through
                advisory = str(via.get("url", "")).rsplit("/", 1)[-1] or str(via["source"])
                findings[advisory] = f"{via['name']} {via.get('range', '')}: {via.get('title')}"
    return findings


def audit_npm(accepted: set[str]) -> bool:
    """Run npm audit on the production dependencies of package-lock.json."""
    command = ["npm", "audit", "--omit=dev", "--json"]
    print("+", " ".join(command), flush=True)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        report = {}
    if "vulnerabilities" not in report:  # npm reports a failed audit as JSON with a message
        reason = report.get("message") or result.stderr.strip() or "no report"
        print(f"npm audit FAILED: the audit did not run: {reason}")
        return False
    findings = npm_findings(report)
    new = {advisory: text for advisory, text in findings.items() if advisory not in accepted}
    for advisory, text in sorted(new.items()):
        print(f"  {advisory}  {text}")
    ignored = len(findings) - len(new)
    print(f"npm audit: {len(new)} new advisories, {ignored} accepted")
    return not new


def main() -> int:
    """Run both audits; exit non-zero if either fails or the allowlist needs attention."""
    accepted, problems = load_allowlist(dt.date.today())
    for problem in problems:
        print(f"{ALLOWLIST.name}: {problem}")
    results = [audit_python(accepted["pypi"]), audit_npm(accepted["npm"])]
    ok = all(results) and not problems
    print("audit passed" if ok else "audit FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
