"""The cluster profile's servers for its tests (see servers.py): started once for the session
on loopback, stopped by process id at its end. `make test` installs them all; a missing one
fails the tests with what to install, it never skips them."""

from __future__ import annotations

import sys

import pytest

from xmlai_assets_tests.cluster import servers


@pytest.fixture(scope="session")
def postgres_url():
    with servers.postgres() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    with servers.redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def s3_env(tmp_path_factory):
    """What an fsspec URL `s3://xmlai/...` needs to reach the S3 server."""
    with servers.s3(tmp_path_factory.mktemp("s3")) as env:
        yield env


@pytest.fixture
def on_s3(s3_env, monkeypatch):
    """This process speaks to the S3 server."""
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    return s3_env


@pytest.fixture(scope="session")
def cluster(tmp_path_factory, postgres_url, redis_url, s3_env):
    """The cluster profile with two Celery workers, training through Pipes (as on a GPU host).
    Yields the environment a process of the cluster runs with, and the workers' log files."""
    root = tmp_path_factory.mktemp("cluster")
    env = servers.cluster_env(root, postgres_url, redis_url, s3_env)
    env["XMLAI_TRAIN_COMMAND"] = f"{sys.executable} -m xmlai_assets.remote.train"
    with servers.celery_workers(env, root, 2) as logs:
        yield env, logs
