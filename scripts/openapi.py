"""Write the OpenAPI document the API serves, without starting or connecting to anything.

    python scripts/openapi.py clients/typescript-check/openapi.json
    python scripts/openapi.py            # to stdout

The document is built by the same factory as the server (`create_app`), from development
settings: only the settings-made bounds (page sizes, batch size) depend on them, and they are
the defaults unless the environment says otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from app.core.config import Settings
from app.main import create_app


def main() -> None:
    """Print the document, or write it to the path given."""
    settings = Settings(environment="development", log_level="WARNING")  # type: ignore[call-arg]
    text = json.dumps(create_app(settings).openapi(), indent=2, sort_keys=False) + "\n"
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
