"""Make a user an admin by email: `python scripts/make_admin.py --email ops@example.com`.

Sets the Firebase custom claim `admin: true` (and the Sensorhub user's role, if they have
signed in already). Refused, with exit code 2, for an address its owner has not verified:
an unverified address proves nothing about who holds the account. Settings come from the
environment and `.env`, as for the API; in production the Firebase Admin SDK needs
credentials (GOOGLE_APPLICATION_CREDENTIALS).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.auth.firebase import FirebaseAuth  # noqa: E402
from app.core import db  # noqa: E402
from app.core.config import get_settings  # noqa: E402
from app.users import service as users_service  # noqa: E402
from app.users.exceptions import EmailNotVerified  # noqa: E402


async def make_admin(email: str) -> int:
    """Grant admin to the account with this email; the process exit code."""
    settings = get_settings()
    client = db.create_client(settings)
    try:
        engine = db.create_engine(client, settings)
        firebase = FirebaseAuth(settings)
        uid = await users_service.grant_admin_by_email(
            engine, firebase, settings=settings, email=email.strip().lower()
        )
    except EmailNotVerified as exc:
        print(f"refused: {exc.detail}; verify the address first", file=sys.stderr)
        return 2
    finally:
        client.close()
    if uid is None:
        print(f"no Firebase account with email {email}", file=sys.stderr)
        return 1
    print(f"{email} (uid {uid}) is now an admin; their next ID token carries the claim")
    return 0


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--email", required=True, help="email of the Firebase account")
    args = parser.parse_args()
    sys.exit(asyncio.run(make_admin(args.email)))


if __name__ == "__main__":
    main()
