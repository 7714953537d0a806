"""A throwaway PostgreSQL cluster of a test's own (initdb, pg_ctl) on a free port, which the test
may stop, crash and start again without touching any server other tests share.

The cluster lives in a new temporary directory and is removed with it. PostgreSQL refuses to run
as root: as root, its programs run as the `postgres` user (runuser) and the directory is given
to that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from services.suite.launch import free_port

START_TIMEOUT_S = 60
SERVER_USER = "postgres"


def server_programs() -> Path | None:
    """The directory of initdb and pg_ctl: on PATH, or the newest Debian install."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(installed[-1]).parent if installed else None


def _version(path: str) -> int:
    return int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0


class PrivatePostgres:
    def __init__(self) -> None:
        programs = server_programs()
        if programs is None:
            raise FileNotFoundError("initdb is not installed")
        self._programs = programs
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="sesame-private-postgres-"))
        self._data = self.directory / "data"
        self._log = self.directory / "server.log"
        self._as_server_user: list[str] = []
        if os.geteuid() == 0:
            server_user = pwd.getpwnam(SERVER_USER)
            os.chown(self.directory, server_user.pw_uid, server_user.pw_gid)
            self._as_server_user = ["runuser", "-u", SERVER_USER, "--"]

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create(self) -> PrivatePostgres:
        self._run(
            "initdb", "-D", str(self._data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        self.start()
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1"
            f" -c unix_socket_directories={self.directory} -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self._data), "-l", str(self._log), "-o", options,
            "-t", str(START_TIMEOUT_S), "-w", "start",
        )  # fmt: skip

    def crash(self) -> None:
        """Stops the server the way a crash does (immediate: no checkpoint, every connection cut;
        the next start recovers from the write-ahead log)."""
        self._run("pg_ctl", "-D", str(self._data), "-m", "immediate", "-w", "stop")

    def create_database(self, name: str) -> str:
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self._run("pg_ctl", "-D", str(self._data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def log(self) -> str:
        return self._log.read_text(errors="replace")[-4000:] if self._log.exists() else ""

    def _run(self, program: str, *arguments: str) -> None:
        subprocess.run(
            [*self._as_server_user, str(self._programs / program), *arguments],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.directory,
        )
