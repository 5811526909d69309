"""Test configuration: the fixtures live in tests/fixtures/ and are loaded as plugins.

Real servers on free ports (`servers`), the app and its clients (`app`), people in the
Firebase Auth emulator (`identities`), a real Celery worker (`worker`) and devices ready to
post readings (`readings`). With `MONGODB_URL`
set, the suite uses that MongoDB instead of starting the embedded server; each run works in
its own database either way.
"""

pytest_plugins = [
    "tests.fixtures.corpus",
    "tests.fixtures.distribution",
    "tests.fixtures.fuzz_figures",
    "tests.fixtures.servers",
    "tests.fixtures.identities",
    "tests.fixtures.app",
    "tests.fixtures.worker",
    "tests.fixtures.readings",
]
