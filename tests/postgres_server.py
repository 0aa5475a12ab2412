"""A throwaway PostgreSQL server from Debian's `postgresql` package, for sweep workers to share.

One command on a fresh Debian or Ubuntu machine::

    sudo apt-get install -y postgresql && python tests/postgres_server.py

starts a server in a temporary folder, listening on a Unix socket only (no TCP port, nothing
reachable from outside), and prints the SQLAlchemy URL to give `sweep create --storage` and
`sweep worker --storage`; Ctrl+C stops it and deletes the folder. tests/engine/test_sweep_postgres.py
uses the same :func:`throwaway_server`. PostgreSQL refuses to run as root, so as root the
server runs as the package's `postgres` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

PORT = 5432  # only names the socket file inside the temporary folder; no TCP port is opened
USER = "tunebench"
DATABASE = "postgres"


def binaries() -> Path | None:
    """The folder with initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def unavailable() -> str | None:
    """Why no server can start here, or None."""
    if binaries() is None:
        return "PostgreSQL is not installed (apt-get install -y postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server as"
    return None


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextlib.contextmanager
def throwaway_server() -> Iterator[str]:
    """Starts a server in a new temporary folder; yields its URL; stops it and deletes the folder."""
    bin_dir = binaries()
    folder = Path(tempfile.mkdtemp(prefix="tunebench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data, log = folder / "data", folder / "server.log"
    try:
        subprocess.run(_as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust",
                                        "--no-sync"]), check=True, capture_output=True, text=True)
        options = f"-k {folder} -c listen_addresses='' -p {PORT} -c fsync=off"
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                                        "-w", "start"]), check=True, capture_output=True, text=True)
        yield f"postgresql+psycopg://{USER}@/{DATABASE}?host={folder}&port={PORT}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                           capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    reason = unavailable()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    with throwaway_server() as url:
        print(url, flush=True)
        print("Server running; Ctrl+C stops it and deletes its folder.", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
