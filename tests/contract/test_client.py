"""A client generated from /openapi.json builds: what `make client-check` does, in the suite.

openapi-typescript (npm, pinned in package-lock.json) turns the served document into types,
and `tsc` type-checks clients/typescript-check/src/usage.ts against them: sign in, create a
device, post a reading as the device, read the latest value. `make install` provides the tools.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
CHECK_DIR = ROOT / "clients" / "typescript-check"


class TestTypeScriptClient:
    async def test_generated_client_type_checks_the_usage_file(
        self, client: httpx.AsyncClient
    ) -> None:
        tools = ROOT / "node_modules" / ".bin"
        for tool in ("openapi-typescript", "tsc"):
            assert (tools / tool).exists(), f"node_modules lacks {tool}: run `make install`"
        document = (await client.get("/openapi.json")).json()
        (CHECK_DIR / "openapi.json").write_text(json.dumps(document, indent=2) + "\n")
        process = await asyncio.create_subprocess_exec(
            "npm",
            "run",
            "--silent",
            "client-check",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=170)
        assert process.returncode == 0, output.decode(errors="replace")[-4000:]
        assert "components" in (CHECK_DIR / "src" / "schema.d.ts").read_text()
