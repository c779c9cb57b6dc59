"""The cluster profile on real servers: the whole lineage on PostgreSQL, Celery workers and S3,
with training through Pipes, gives the artifacts of the embedded default, byte for byte;
parsing fans out over both workers; a pool's slot keeps writers of one artifact apart across
processes; version claims and champion swaps stay safe on a real object store."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest
import yaml

from xmlai_assets.artifacts import ArtifactStore
from xmlai_assets.cli import run_pipeline
from xmlai_assets.defs.resources import MASTER_POOL
from xmlai_assets.model.store import (
    StaleChampion,
    champion,
    champion_generation,
    set_champion,
    versions,
)
from xmlai_assets.paths import ARTIFACTS, PROJECT_ROOT, DataLayout, frames_parquet
from xmlai_assets.synth import generate_timeline
from xmlai_assets_tests.cluster.servers import BUCKET
from xmlai_assets_tests.defs.test_train_assets import TINY
from xmlai_assets_tests.test_artifacts import assert_one_of_many_creators_wins

pytestmark = pytest.mark.cluster

TASK_DONE = re.compile(r"Task execute_plan\[[^\]]+\] succeeded")


@pytest.fixture
def instance(cluster, on_s3, monkeypatch):
    """The cluster's instance (PostgreSQL) as this process sees it, with timelines in the
    watched folder, at the path every worker sees (a shared mount on a real cluster)."""
    env, _ = cluster
    timelines = Path(env["XMLAI_DATA_DIR"]) / "timelines"
    if not any(timelines.glob("*.xml")):
        for seed in range(8):
            generate_timeline(seed, seconds=12, name=f"tl {seed}").write(timelines)
    for name in ("DAGSTER_HOME", "XMLAI_POSTGRES_URL", "XMLAI_S3_BUCKET"):
        monkeypatch.setenv(name, env[name])
    with dg.DagsterInstance.get() as instance:
        yield instance


def xmlai_run(*args: str) -> list[str]:
    """`xmlai-assets run` with `args`, as a command line."""
    return [sys.executable, "-m", "xmlai_assets.cli", "run", *args]


def test_the_lineage_on_postgres_celery_and_s3_is_the_embedded_default_byte_for_byte(
    cluster, instance, tmp_path, monkeypatch
):
    env, worker_logs = cluster
    timelines = Path(env["XMLAI_DATA_DIR"]) / "timelines"
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(TINY))
    before = {r.run_id for r in instance.get_runs()}
    run = subprocess.run(
        xmlai_run("--preset", str(preset), "--parse-runs", "2"),
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"done: artifacts in s3://{BUCKET}/cluster-run" in run.stdout

    # every step ran on a worker, and both workers took part in the parse runs
    done = [len(TASK_DONE.findall(log.read_text())) for log in worker_logs]
    assert all(n > 0 for n in done), done

    # the run history is in PostgreSQL: the two parse runs and the rest, all successful
    runs = [r for r in instance.get_runs() if r.run_id not in before]
    assert len(runs) == 3 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    parse_runs = [r for r in runs if "dagster/asset_partition_range_start" in r.tags]
    assert len(parse_runs) == 2
    trained = instance.get_latest_materialization_event(dg.AssetKey("trained_model"))
    metadata = trained.asset_materialization.metadata
    assert metadata["trained_in"].value == env["XMLAI_TRAIN_COMMAND"]  # through Pipes
    assert metadata["version"].value.startswith(f"s3://{BUCKET}/cluster-run/models/v")
    version = metadata["version_name"].value
    # its log lines came back (through S3: see the Kubernetes test), and the session removed
    # its context and message chunks from the store's pipes/
    logs = [e.user_message for e in instance.all_logs(trained.run_id)]
    assert any(line.startswith("epoch 1/") for line in logs)
    import s3fs

    pipes = f"{BUCKET}/cluster-run/pipes/"
    assert [k for k in s3fs.S3FileSystem().find(pipes) if k.startswith(pipes)] == []

    # the same lineage on the embedded default (in-process executor, SQLite, a local folder)
    local = DataLayout.at(tmp_path / "local", timelines)
    monkeypatch.delenv("XMLAI_EXECUTOR", raising=False)
    with dg.instance_for_test() as embedded:
        assert run_pipeline(local, embedded, TINY)
    remote = ArtifactStore(env["XMLAI_DATA_URL"])
    names = [(name, name) for names in ARTIFACTS.values() for name in names]
    names += [(frames_parquet(path.name),) * 2 for path in timelines.iterdir()]
    for file in ("model.safetensors", "scalers.json", "config.json"):
        names.append((f"models/{version}/{file}", f"models/v0001/{file}"))
    for there, here in names:
        assert remote.read_bytes(there) == local.artifacts.read_bytes(here), there
    metadata = json.loads(remote.read_bytes(f"models/{version}/metadata.json"))
    assert (
        metadata["data_versions"]
        == json.loads(local.artifacts.read_bytes("models/v0001/metadata.json"))["data_versions"]
    )


def test_create_only_writes_on_a_real_object_store_have_one_winner(on_s3):
    assert_one_of_many_creators_wins(ArtifactStore(f"s3://{BUCKET}/race-{uuid.uuid4().hex}"), 24)


def test_reads_of_many_artifacts_go_together_on_a_real_object_store(on_s3):
    store = ArtifactStore(f"s3://{BUCKET}/reports-{uuid.uuid4().hex}")
    names = [f"frames/{i}.json" for i in range(40)]
    for name in names[::2]:
        store.write_bytes(name, name.encode())
    found = store.read_each(names)
    assert list(found) == names
    assert all(found[name] == name.encode() for name in names[::2])
    assert all(isinstance(found[name], FileNotFoundError) for name in names[1::2])


def test_versions_and_a_stale_champion_swap_on_a_real_object_store(on_s3):
    import torch

    from xmlai_assets.model.config import ModelConfig
    from xmlai_assets.model.store import save_version
    from xmlai_assets.model.transformer import MultiTrackTransformer

    torch.manual_seed(0)
    model = MultiTrackTransformer(ModelConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32))
    store = ArtifactStore(f"s3://{BUCKET}/models-{uuid.uuid4().hex}")

    def save(i: int) -> str:
        return save_version(store, model, config={}, metadata={"i": i}, scalers_json=b"{}").name

    with ThreadPoolExecutor(6) as pool:
        names = list(pool.map(save, range(6)))
    assert sorted(names) == versions(store) == [f"v{i:04d}" for i in range(1, 7)]
    generation = champion_generation(store)
    set_champion(store, "v0001", generation=generation)
    try:
        set_champion(store, "v0002", generation=generation)  # read before the swap above
        raise AssertionError("a stale swap was accepted")
    except StaleChampion:
        pass
    assert champion(store) == "v0001"


def test_a_run_waits_while_another_holds_the_pool_of_the_artifact_it_writes(cluster, instance):
    """The master CSV's pool has one slot in the cluster's instance (PostgreSQL), for every
    host. While another run holds it, a run that writes the master waits; it goes on once the
    slot is freed (as the daemon frees a dead run's)."""
    env, _ = cluster
    argv = xmlai_run("--no-train")
    storage = instance.event_log_storage
    subprocess.run(argv, env=env, cwd=PROJECT_ROOT, capture_output=True, timeout=600)
    assert storage.get_concurrency_info(MASTER_POOL).slot_count == 1
    status = storage.claim_concurrency_slot(MASTER_POOL, "another-run", "master_training_data")
    assert status.is_claimed
    run = subprocess.Popen(argv, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(25)
        assert run.poll() is None, "the run went on while another held the pool's slot"
        waiting = instance.get_runs(limit=1)[0]
        assert "master_training_data" not in _started_steps(instance, waiting.run_id)
    finally:
        released = time.time()
        storage.free_concurrency_slots_for_run("another-run")
    out = run.communicate(timeout=600)[0]
    assert run.returncode == 0, out[-3000:]
    starts = _started_steps(instance, waiting.run_id)
    assert starts["master_training_data"] >= released


def _started_steps(instance, run_id: str) -> dict[str, float]:
    """When each step of a run started."""
    return {
        record.dagster_event.step_key: record.timestamp
        for record in instance.all_logs(run_id)
        if record.dagster_event is not None
        and record.dagster_event.event_type_value == "STEP_START"
    }


def test_a_run_killed_while_waiting_for_a_slot_does_not_keep_it_from_the_next(cluster, instance):
    """A run waits for the master's slot, and its process is killed (SIGKILL). When the slot
    frees, it goes to that dead run's waiting step. The next run on the host marks the dead
    run failed and frees what it held, so it does not wait forever."""
    env, _ = cluster
    argv = xmlai_run("--no-train")
    storage = instance.event_log_storage
    subprocess.run(argv, env=env, cwd=PROJECT_ROOT, capture_output=True, timeout=600)
    assert storage.claim_concurrency_slot(MASTER_POOL, "holder", "master").is_claimed
    doomed = subprocess.Popen(
        argv, env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not storage.get_concurrency_info(MASTER_POOL).pending_run_ids:
            assert time.monotonic() < deadline, "the run never waited for the slot"
            time.sleep(0.5)
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(30)
    (dead_run,) = storage.get_concurrency_info(MASTER_POOL).pending_run_ids
    storage.free_concurrency_slots_for_run("holder")
    # the slot went to the dead run's waiting step
    assert storage.get_concurrency_info(MASTER_POOL).assigned_run_ids == {dead_run}
    after = subprocess.run(
        argv, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert after.returncode == 0, after.stdout[-3000:]
    dead = instance.get_run_by_id(dead_run)
    assert dead.status == dg.DagsterRunStatus.FAILURE
    assert not storage.get_concurrency_info(MASTER_POOL).claimed_slots


class Kubelet:
    """Kubernetes as far as PipesK8sClient uses it: a pod runs as a process here, its first
    container's command with the container's environment and the keys of the secrets it names
    (as a kubelet would set them). Keeps every pod body it was given."""

    def __init__(self, secrets: dict[str, dict[str, str]]):
        self.core_api = self
        self.secrets = secrets
        self.pods: dict[tuple[str, str], tuple] = {}
        self.deleted: list[str] = []

    def create_namespaced_pod(self, namespace, body):
        container = body.spec.containers[0]
        env = {item.name: item.value for item in container.env}
        for source in container.env_from or []:
            env |= self.secrets[source.secret_ref.name]
        command = list(container.command)
        if command[0] == "python":  # the image's Python: this one
            command[0] = sys.executable
        process = subprocess.Popen(
            command, env={"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], **env}
        )
        self.pods[(namespace, body.metadata.name)] = (body, process)

    def wait_for_pod(self, pod_name, namespace, **kwargs):
        _, process = self.pods[(namespace, pod_name)]
        if process.wait(timeout=600) != 0:
            raise RuntimeError(f"pod {pod_name} failed with exit code {process.returncode}")

    def delete_namespaced_pod(self, pod_name, namespace):
        self.deleted.append(pod_name)


def test_training_in_a_kubernetes_pod_speaks_pipes_through_s3(on_s3, tmp_path, monkeypatch):
    """XMLAI_TRAIN_IMAGE: the training step starts a pod through PipesK8sClient, on a GPU node,
    and hears it through S3 alone (the pod's environment holds no path of this host). The
    pod's Kubernetes is a stand-in (no cluster starts here); the pod body is dagster-k8s's own
    and the S3 server is real."""
    import dagster_k8s.pipes
    from dagster_pipes import decode_param

    from xmlai_assets.defs.resources import TRAIN_COMMAND_ENV

    kubelet = Kubelet({"xmlai-s3": {k: on_s3[k] for k in on_s3 if "ACCESS" in k}})
    monkeypatch.setattr(dagster_k8s.pipes.PipesK8sClient, "_load_k8s_config", lambda self: None)
    monkeypatch.setattr(
        dagster_k8s.pipes.DagsterKubernetesClient, "production_client", lambda: kubelet
    )
    image = "registry.example/xmlai:1"
    monkeypatch.delenv("XMLAI_EXECUTOR", raising=False)
    monkeypatch.delenv(TRAIN_COMMAND_ENV, raising=False)
    for name, value in {
        "XMLAI_TRAIN_IMAGE": image,
        "XMLAI_TRAIN_NAMESPACE": "training",
        "XMLAI_TRAIN_SECRET": "xmlai-s3",
        "XMLAI_K8S_GPU_NODE_SELECTOR": "pool=gpu-h100",
    }.items():
        monkeypatch.setenv(name, value)
    prefix = f"k8s-{uuid.uuid4().hex}"
    layout = DataLayout.at(tmp_path / "data", data_url=f"s3://{BUCKET}/{prefix}")
    for seed in range(3):
        generate_timeline(seed, seconds=6, name=f"t{seed}").write(layout.timelines_dir)
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, TINY)
        event = instance.get_latest_materialization_event(dg.AssetKey("trained_model"))
        metadata = event.asset_materialization.metadata
        logs = [e.user_message for e in instance.all_logs(event.run_id)]
    assert metadata["trained_in"].value == f"a Kubernetes pod of {image}"
    assert metadata["version"].value == f"s3://{BUCKET}/{prefix}/models/v0001"
    assert layout.models.exists("v0001/metadata.json")
    assert any(line.startswith("epoch 1/") for line in logs)  # the pod's log lines, via S3

    [((namespace, name), (pod, _))] = kubelet.pods.items()
    assert namespace == "training" and kubelet.deleted == [name]
    spec, container = pod.spec, pod.spec.containers[0]
    assert container.image == image
    assert container.command == ["python", "-m", "xmlai_assets.remote.train"]
    assert container.resources.limits == {"nvidia.com/gpu": "1"}
    assert spec.node_selector == {"pool": "gpu-h100"}
    assert [t.key for t in spec.tolerations] == ["nvidia.com/gpu"]
    assert spec.restart_policy == "Never"
    assert [s.secret_ref.name for s in container.env_from] == ["xmlai-s3"]
    env = {item.name: item.value for item in container.env}
    assert "AWS_SECRET_ACCESS_KEY" not in env  # credentials come from the secret only
    assert env["AWS_ENDPOINT_URL"] == on_s3["AWS_ENDPOINT_URL"]
    context = decode_param(env["DAGSTER_PIPES_CONTEXT"])
    messages = decode_param(env["DAGSTER_PIPES_MESSAGES"])
    assert context["bucket"] == messages["bucket"] == BUCKET
    assert context["key"].startswith(f"{prefix}/pipes/")
    assert messages["key_prefix"].startswith(f"{prefix}/pipes/")
    assert str(tmp_path) not in json.dumps(env)
    # the session removed its context and message chunks
    import s3fs

    pipes = f"{BUCKET}/{prefix}/pipes/"
    assert [k for k in s3fs.S3FileSystem().find(pipes) if k.startswith(pipes)] == []
