"""The database: the embedded PostGIS cluster and the only place engines are created.

With no ``GRIDGOV_DATABASE_URL`` gridgov runs a private PostgreSQL cluster in
``<project>/.gridgov/pgdata`` (port 55432, socket in ``.gridgov/run``). PostgreSQL refuses to run
as root, so when gridgov runs as root the cluster belongs to, and runs as, the ``postgres`` user.
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError

from gis.errors import SetupError
from gis.readpool import ReadPool
from gis.settings import DatabaseSettings

PG_MAJOR = 15
CLUSTER_SUPERUSER = "postgres"
EXTENSIONS = ("postgis", "pgrouting")

# Server settings for the embedded cluster: durable (fsync stays on: nothing acknowledged is
# lost), sized for a small machine, JIT off because it slows the short queries we run most.
_CLUSTER_CONF = """
# --- gridgov embedded cluster ---
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = 512MB
work_mem = 32MB
maintenance_work_mem = 512MB
effective_cache_size = 8GB
max_wal_size = 4GB
checkpoint_timeout = 15min
jit = off
random_page_cost = 1.1
log_min_duration_statement = 2000
"""


def _pg_bin(settings: DatabaseSettings) -> Path:
    if settings.pg_bin:
        return settings.pg_bin
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    preferred = [c for c in candidates if c.parent.parent.name == str(PG_MAJOR)]
    for initdb in preferred or candidates:
        return initdb.parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise SetupError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql-15 "
        "(make setup does it) or set GRIDGOV_PG_BIN"
    )


def postgis_available(settings: DatabaseSettings) -> bool:
    """True when the PostGIS extension files are installed for the cluster's PostgreSQL."""
    share = _pg_bin(settings).parent.parent.parent.parent / "share" / "postgresql"
    major = _pg_bin(settings).parent.name
    return (share / major / "extension" / "postgis.control").is_file()


def _as_cluster_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", CLUSTER_SUPERUSER, "--", *cmd]
    return cmd


def _chown_for_cluster(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user=CLUSTER_SUPERUSER, group=CLUSTER_SUPERUSER)


def _run(cmd: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_as_cluster_user(cmd), capture_output=True, text=True, check=check)


@dataclass(frozen=True)
class ClusterStatus:
    embedded: bool
    initialised: bool
    running: bool
    url: str
    detail: str = ""


def _check_data_dir_reachable(path: Path) -> None:
    """The cluster user must be able to reach the data folder through every parent folder."""
    if os.geteuid() != 0:
        return
    for parent in reversed(path.resolve().parents):
        mode = parent.stat().st_mode
        if not mode & 0o001:
            raise SetupError(
                f"the postgres user cannot enter {parent} (needed for the data folder {path}); "
                "set GRIDGOV_DATA_DIR to a folder it can reach"
            )


def init_cluster(settings: DatabaseSettings) -> bool:
    """Create the embedded cluster if it does not exist yet. Returns True when it was created."""
    if not postgis_available(settings):
        raise SetupError(
            "PostGIS is not installed for PostgreSQL 15: run `make setup`, or "
            "`apt-get install -y postgresql-15-postgis-3 postgresql-15-pgrouting`"
        )
    if (settings.cluster_dir / "PG_VERSION").is_file():
        return False
    _check_data_dir_reachable(settings.data_dir)
    for folder in (settings.data_dir, settings.socket_dir):
        folder.mkdir(parents=True, exist_ok=True)
        _chown_for_cluster(folder)
    settings.cluster_dir.mkdir(mode=0o700, exist_ok=True)
    _chown_for_cluster(settings.cluster_dir)
    result = _run(
        [
            str(_pg_bin(settings) / "initdb"),
            "-D",
            str(settings.cluster_dir),
            "-U",
            CLUSTER_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ],
        check=False,
    )
    if result.returncode != 0:
        raise SetupError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
    conf = settings.cluster_dir / "postgresql.conf"
    with conf.open("a") as fh:
        fh.write(_CLUSTER_CONF)
        fh.write(f"port = {settings.pg_port}\n")
        fh.write(f"unix_socket_directories = '{settings.socket_dir}'\n")
    return True


def _pg_ctl(settings: DatabaseSettings, *args: str) -> subprocess.CompletedProcess[str]:
    return _run([str(_pg_bin(settings) / "pg_ctl"), "-D", str(settings.cluster_dir), *args],
                check=False)


def cluster_running(settings: DatabaseSettings) -> bool:
    if not (settings.cluster_dir / "PG_VERSION").is_file():
        return False
    return _pg_ctl(settings, "status").returncode == 0


def start_cluster(settings: DatabaseSettings, *, timeout_s: float = 60) -> ClusterStatus:
    """Initialise (first time) and start the embedded cluster, then make sure the database exists.

    Idempotent: starting a running cluster only checks the database.
    """
    if not settings.embedded:
        ensure_database(settings)
        return status(settings)
    init_cluster(settings)
    settings.socket_dir.mkdir(parents=True, exist_ok=True)
    _chown_for_cluster(settings.socket_dir)
    if cluster_running(settings):
        running_port = _running_port(settings)
        if running_port is not None and running_port != settings.pg_port:
            raise SetupError(
                f"the embedded cluster in {settings.cluster_dir} is running on port"
                f" {running_port}, not on GRIDGOV_PG_PORT={settings.pg_port}: stop it"
                " (`gridgov db stop`) and start it again to move it, or set"
                f" GRIDGOV_PG_PORT={running_port}")
    else:
        _chown_for_cluster(settings.log_file.parent)
        if settings.log_file.exists():
            _chown_for_cluster(settings.log_file)
        # The port and socket folder of these settings, whatever the cluster was created with
        # (postgresql.conf keeps those of its creation).
        server_options = f"-p {settings.pg_port} -k {shlex.quote(str(settings.socket_dir))}"
        result = _pg_ctl(settings, "start", "-w", "-t", str(int(timeout_s)), "-l",
                         str(settings.log_file), "-o", server_options)
        if result.returncode != 0:
            tail = ""
            if settings.log_file.exists():
                tail = "\n".join(settings.log_file.read_text(errors="ignore").splitlines()[-10:])
            raise SetupError(f"PostgreSQL did not start: {result.stderr.strip()}\n{tail}")
    _wait_ready(settings, timeout_s)
    ensure_database(settings)
    return status(settings)


def _running_port(settings: DatabaseSettings) -> int | None:
    """The port of the running embedded cluster (line 4 of ``postmaster.pid``)."""
    try:
        lines = (settings.cluster_dir / "postmaster.pid").read_text().splitlines()
        return int(lines[3])
    except (OSError, IndexError, ValueError):
        return None


def stop_cluster(settings: DatabaseSettings, *, mode: str = "fast") -> ClusterStatus:
    if settings.embedded and cluster_running(settings):
        result = _pg_ctl(settings, "stop", "-w", "-m", mode)
        if result.returncode != 0:
            raise SetupError(f"pg_ctl stop failed: {result.stderr.strip()}")
    return status(settings)


def _wait_ready(settings: DatabaseSettings, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    engine = create_engine(server_url(settings, "postgres"), poolclass=_null_pool())
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                if time.monotonic() > deadline:
                    raise SetupError(f"PostgreSQL not reachable: {exc}") from exc
                time.sleep(0.2)
    finally:
        engine.dispose()


def _null_pool():  # type: ignore[no-untyped-def]
    from sqlalchemy.pool import NullPool

    return NullPool


def server_url(settings: DatabaseSettings, dbname: str | None = None) -> URL:
    """The SQLAlchemy URL of database ``dbname`` (default: the configured one)."""
    if settings.database_url:
        url = make_url(settings.database_url)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg2")
        return url.set(database=dbname) if dbname else url
    return URL.create(
        "postgresql+psycopg2",
        username=CLUSTER_SUPERUSER,
        database=dbname or settings.db_name,
        query={"host": str(settings.socket_dir), "port": str(settings.pg_port)},
    )


def libpq_dsn(settings: DatabaseSettings, dbname: str | None = None) -> str:
    """A libpq connection string (for psql, ogr2ogr, pg_dump...)."""
    url = server_url(settings, dbname)
    if settings.embedded:
        return (
            f"host={settings.socket_dir} port={settings.pg_port} "
            f"user={CLUSTER_SUPERUSER} dbname={url.database}"
        )
    parts = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
    }
    return " ".join(f"{k}={v}" for k, v in parts.items() if v)


def ensure_database(settings: DatabaseSettings, dbname: str | None = None) -> bool:
    """Create database ``dbname`` with PostGIS and pgRouting if missing. True when created."""
    name = dbname or server_url(settings).database
    assert name
    created = False
    admin = create_engine(server_url(settings, "postgres"), poolclass=_null_pool(),
                          isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                  {"n": name}).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{_ident(name)}"'))
                created = True
    finally:
        admin.dispose()
    engine = create_engine(server_url(settings, name), poolclass=_null_pool(),
                           isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for ext in EXTENSIONS:
                conn.execute(text(f"CREATE EXTENSION IF NOT EXISTS {ext}"))
    finally:
        engine.dispose()
    return created


def drop_database(settings: DatabaseSettings, dbname: str) -> None:
    admin = create_engine(server_url(settings, "postgres"), poolclass=_null_pool(),
                          isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{_ident(dbname)}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise SetupError(f"invalid database name {name!r}")
    return name


# Bounds, so that a database that is down or overloaded answers quickly (503) instead of
# hanging a request: libpq's connect timeout (its minimum is 2 s), how long a request waits for
# a pooled connection, and TCP keepalives so a server that vanished from the network is noticed
# on idle connections (libpq ignores them on Unix sockets, where death is seen at once).
CONNECT_TIMEOUT_S = 3
POOL_TIMEOUT_S = 10
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
               "keepalives_count": 3}


def make_engine(settings: DatabaseSettings, dbname: str | None = None, **kwargs) -> Engine:
    """The one way gridgov creates engines.

    Connections are checked for staleness on checkout without a round trip (see
    ``_drop_stale_on_checkout``), and a disconnect seen mid-query invalidates the whole pool
    (SQLAlchemy's default), so after a PostgreSQL restart requests get fresh connections, not
    errors. Connecting and waiting for the pool are bounded (``CONNECT_TIMEOUT_S``,
    ``POOL_TIMEOUT_S``); the API maps both failures to 503 with ``Retry-After``.
    """
    url = server_url(settings, dbname)
    connect_args = dict(kwargs.pop("connect_args", {}))
    for key, value in {"connect_timeout": CONNECT_TIMEOUT_S, **_KEEPALIVES}.items():
        if key not in url.query:
            connect_args.setdefault(key, value)
    options: dict = {"pool_pre_ping": False, "connect_args": connect_args, **kwargs}
    if "poolclass" not in kwargs:
        options.setdefault("pool_size", settings.pool_size)
        options.setdefault("max_overflow", settings.max_overflow)
        options.setdefault("pool_timeout", POOL_TIMEOUT_S)
    engine = create_engine(url, **options)
    if not options["pool_pre_ping"]:
        event.listen(engine, "checkout", _drop_stale_on_checkout)
    return engine


def make_read_pool(settings: DatabaseSettings, dbname: str | None = None, *,
                   size: int | None = None) -> ReadPool:
    """The asyncpg pool of the hot reads (tiles, GeoJSON pages: ``gis.readpool``), to the
    same server and database as ``make_engine``; ``size`` defaults to ``GRIDGOV_POOL_SIZE``.
    Nothing connects until the first read."""
    url = server_url(settings, dbname)
    host = url.query.get("host") or url.host
    port = url.query.get("port") or url.port
    kwargs: dict[str, Any] = {
        "host": host if isinstance(host, str) else None,
        "port": int(port) if isinstance(port, (int, str)) and str(port) else None,
        "user": url.username, "password": url.password, "database": url.database,
        "timeout": CONNECT_TIMEOUT_S,
    }
    return ReadPool({k: v for k, v in kwargs.items() if v is not None},
                    size=size or settings.pool_size, acquire_timeout_s=POOL_TIMEOUT_S)


def _drop_stale_on_checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
    """Refuse a pooled connection whose server side is gone, without a round trip.

    An idle connection has nothing to read. When its backend ended (server restarted or
    stopped, ``pg_terminate_backend``, ``kill -9``), the server's last message or the end of
    the stream makes the socket readable: raising ``DisconnectionError`` makes the pool discard
    it and connect afresh (if that fails too, the caller gets the ``OperationalError`` → 503).
    About 1–3 µs per checkout against ~20 µs for ``pool_pre_ping``'s ``SELECT 1`` over the
    Unix socket (``docs/benchmarks.md``).
    """
    if getattr(dbapi_conn, "closed", 0):
        raise DisconnectionError("connection closed")
    try:
        fd = dbapi_conn.fileno()
    except Exception:  # noqa: BLE001 - a driver without fileno(): rely on error invalidation
        return
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):
        raise DisconnectionError("server closed the connection")


def status(settings: DatabaseSettings) -> ClusterStatus:
    url = server_url(settings).render_as_string(hide_password=True)
    if not settings.embedded:
        try:
            engine = make_engine(settings, poolclass=_null_pool())
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            return ClusterStatus(False, True, True, url)
        except Exception as exc:  # noqa: BLE001
            return ClusterStatus(False, True, False, url, detail=type(exc).__name__)
    initialised = (settings.cluster_dir / "PG_VERSION").is_file()
    return ClusterStatus(True, initialised, cluster_running(settings), url,
                         detail=str(settings.cluster_dir))


def versions(engine: Engine) -> dict[str, str]:
    """PostgreSQL, PostGIS and pgRouting versions as reported by the server."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT current_setting('server_version'), postgis_lib_version(), "
                "(SELECT extversion FROM pg_extension WHERE extname = 'pgrouting')"
            )
        ).one()
    return {"postgresql": row[0], "postgis": row[1], "pgrouting": row[2] or ""}
