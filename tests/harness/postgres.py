"""A real PostgreSQL cluster made with initdb in a temp dir, on 127.0.0.1:<free port>, trust auth.

PostgreSQL refuses to run as root. When the tests run as root (CI, developers here), initdb/pg_ctl run as an
unprivileged user: $PINGWATCH_PG_USER if set, else `postgres` if it exists (Debian's postgresql package makes it),
else a system user `pingwatch-pg` created with useradd. The temp dir is made directly under the system temp dir
(not under pytest's 0700 tmp tree, which that user could not traverse) and chowned to it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .ports import HOST, INSTALL_HINT, ServiceStartError, free_port, tail

FALLBACK_USER = "pingwatch-pg"


def find_pg_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres (resolving /usr/local/bin style symlinks)."""
    candidates: list[str] = []
    if os.environ.get("PINGWATCH_PG_BINDIR"):
        candidates.append(os.path.join(os.environ["PINGWATCH_PG_BINDIR"], "initdb"))
    if shutil.which("initdb"):
        candidates.append(shutil.which("initdb"))  # type: ignore[arg-type]

    def version_key(p: str) -> float:
        try:
            return float(Path(p).parents[1].name)
        except ValueError:
            return 0.0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version_key, reverse=True)
    for c in candidates:
        bindir = Path(os.path.realpath(c)).parent
        if all(os.access(bindir / b, os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise ServiceStartError(
        "postgres: no PostgreSQL server found (initdb/pg_ctl/postgres on PATH or in /usr/lib/postgresql/*/bin; "
        f"Debian package postgresql); {INSTALL_HINT}"
    )


def _unprivileged_user() -> pwd.struct_passwd | None:
    """None when we are not root (run as ourselves); else the user to run the cluster as (created if needed)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("PINGWATCH_PG_USER")
    names = [name] if name else ["postgres", FALLBACK_USER]
    for n in names:
        try:
            return pwd.getpwnam(n)
        except KeyError:
            continue
    if name:
        raise ServiceStartError(f"postgres: PINGWATCH_PG_USER={name} does not exist")
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    r = subprocess.run(
        [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
         FALLBACK_USER],
        capture_output=True, text=True,
    )
    if r.returncode != 0 and "already exists" not in r.stderr:
        raise ServiceStartError(
            "postgres: PostgreSQL refuses to run as root and creating the unprivileged user "
            f"{FALLBACK_USER!r} failed: {r.stderr.strip()}. Set PINGWATCH_PG_USER to an existing user."
        )
    return pwd.getpwnam(FALLBACK_USER)


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    dbname: str
    workdir: Path
    log_path: Path
    bindir: Path
    startup_s: float = 0.0
    _os_user: pwd.struct_passwd | None = field(default=None, repr=False)
    _running: bool = field(default=False, repr=False)

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.dbname)

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create a fresh database (for a test that wants its own) and return its DSN."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn_for("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn_for(name)

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        return _run_as(self._os_user, args, self.workdir, timeout)

    def stop(self) -> None:
        if self._running:
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.workdir / "data"), "-m", "immediate", "-w",
                       "-t", "20", "stop"], timeout=30)
            self._running = False
        shutil.rmtree(self.workdir, ignore_errors=True)


def _run_as(user: pwd.struct_passwd | None, args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C",
        "LANG": "C",
        "HOME": str(cwd),
        "TZ": "UTC",
    }
    kwargs: dict = {}
    if user is not None:
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs
    )


def start_postgres(dbname: str = "pingwatch_test", timeout: float = 30.0) -> Postgres:
    bindir = find_pg_bindir()
    t0 = time.monotonic()
    os_user = _unprivileged_user()
    workdir = Path(tempfile.mkdtemp(prefix="pingwatch-pg-"))
    if os_user is not None:
        os.chown(workdir, os_user.pw_uid, os_user.pw_gid)
    data = workdir / "data"
    log_path = workdir / "postgres.log"
    port = free_port()
    pg = Postgres(host=HOST, port=port, user="postgres", dbname=dbname, workdir=workdir, log_path=log_path,
                  bindir=bindir, _os_user=os_user)
    try:
        r = pg._run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                     "--locale=C", "--no-sync", "--no-instructions"], timeout=timeout)
        if r.returncode != 0:
            raise ServiceStartError(f"postgres: initdb failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        options = " ".join([
            f"-c listen_addresses={HOST}",
            f"-c port={port}",
            f"-c unix_socket_directories={workdir}",
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
            "-c max_connections=50",
            "-c shared_buffers=32MB",
        ])
        # pg_ctl -w waits for the server to accept connections itself (bounded by -t).
        r = pg._run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log_path), "-o", options, "-w",
                     "-t", str(int(timeout)), "start"], timeout=timeout + 5)
        if r.returncode != 0:
            raise ServiceStartError(
                f"postgres: pg_ctl start failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n{tail(log_path)}"
            )
        pg._running = True
        pg.create_database(dbname)
    except BaseException:
        pg.stop()
        raise
    pg.startup_s = time.monotonic() - t0
    return pg
