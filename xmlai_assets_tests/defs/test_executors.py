"""The executor each profile runs steps on, and the Kubernetes pods of the k8s profile,
rendered by dagster-k8s as the executor would (no cluster can be started here)."""

import json
import os
import subprocess
import sys

import pytest

from xmlai_assets.defs.executors import executor_from_env

RENDER = """
import json
from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config
from xmlai_assets.definitions import build_definitions

defs = build_definitions()
config = DagsterK8sJobConfig(job_image="registry.example/xmlai:1", dagster_home="/opt/dagster",
                             instance_config_map="dagster-instance")
pods = {}
for key in ("trained_model", "master_training_data"):
    node = defs.resolve_assets_def(key).node_def
    job = construct_dagster_k8s_job(config, ["dagster", "api", "execute_step"], f"step-{key}",
                                    get_user_defined_k8s_config(node.tags))
    pods[key] = job.to_dict()["spec"]["template"]["spec"]
print(json.dumps({"executor": defs.executor.name, "pods": pods}, default=str))
"""


def render(env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", RENDER],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_kubernetes_profile_puts_training_alone_on_a_gpu_node():
    rendered = render({"XMLAI_EXECUTOR": "k8s", "XMLAI_K8S_GPU_NODE_SELECTOR": "pool=gpu-a100"})
    assert rendered["executor"] == "k8s"
    train = rendered["pods"]["trained_model"]
    container = train["containers"][0]
    assert container["image"] == "registry.example/xmlai:1"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert train["node_selector"] == {"pool": "gpu-a100"}
    assert train["tolerations"][0]["key"] == "nvidia.com/gpu"
    other = rendered["pods"]["master_training_data"]
    assert not (other["containers"][0]["resources"] or {}).get("limits")
    assert not other.get("node_selector")


def test_a_step_that_trains_in_a_pod_of_its_own_asks_for_no_gpu():
    rendered = render({"XMLAI_EXECUTOR": "k8s", "XMLAI_TRAIN_IMAGE": "registry.example/xmlai:1"})
    train = rendered["pods"]["trained_model"]
    assert not (train["containers"][0]["resources"] or {}).get("limits")
    assert not train.get("node_selector")


@pytest.mark.parametrize(
    ("gpus", "command", "expected"),
    [
        ("1", "", ["python", "-m", "xmlai_assets.remote.train"]),
        ("4", "", ["torchrun", "--standalone", "--nproc-per-node=4", "-m", "xmlai_assets.remote.train"]),
        ("2", "/opt/venv/bin/python -m xmlai_assets.remote.train", ["/opt/venv/bin/python", "-m", "xmlai_assets.remote.train"]),
    ],
)  # fmt: skip
def test_the_training_pod_runs_every_gpu_it_asks_for(monkeypatch, gpus, command, expected):
    from xmlai_assets.defs.resources import TrainingHost
    from xmlai_assets.defs.train.assets import training_pod

    monkeypatch.setenv("XMLAI_K8S_TRAIN_GPUS", gpus)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://s3.internal:8333")
    host = TrainingHost(image="registry.example/xmlai:1", command=command, secret="s3-keys")
    pod = training_pod(host, {"XMLAI_PIPES_CHANNEL": "s3"})
    assert pod["command"] == expected
    container = pod["base_pod_spec"]["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": gpus}
    assert container["env_from"] == [{"secret_ref": {"name": "s3-keys"}}]
    assert pod["env"]["AWS_ENDPOINT_URL"] == "http://s3.internal:8333"
    assert pod["env"]["XMLAI_PIPES_CHANNEL"] == "s3"
    assert pod["namespace"] is None  # the step's own


def test_the_default_profile_asks_kubernetes_for_nothing():
    rendered = render({"XMLAI_EXECUTOR": ""})
    assert rendered["executor"] == "in_process"
    assert not rendered["pods"]["trained_model"].get("node_selector")


@pytest.mark.parametrize(
    ("kind", "name"),
    [("", "in_process"), ("multiprocess", "multiprocess"), ("celery", "celery"), ("k8s", "k8s")],
)
def test_the_executor_follows_xmlai_executor(monkeypatch, kind, name):
    monkeypatch.setenv("XMLAI_EXECUTOR", kind)
    assert executor_from_env().name == name


def test_an_unknown_executor_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv("XMLAI_EXECUTOR", "slurm")
    with pytest.raises(ValueError, match="in_process, multiprocess, celery, k8s"):
        executor_from_env()


POLICY = """
from xmlai_assets.definitions import build_definitions
policy = build_definitions().resolve_assets_def("timeline_frames").backfill_policy
print(policy.policy_type.value, policy.max_partitions_per_run)
"""


@pytest.mark.parametrize(("per_run", "expected"), [("", "SINGLE_RUN None"), ("25", "MULTI_RUN 25")])
def test_a_backfill_of_the_parse_is_cut_into_runs_as_configured(per_run, expected):
    out = subprocess.run(
        [sys.executable, "-c", POLICY],
        env={**os.environ, "XMLAI_PARSE_FILES_PER_RUN": per_run},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == expected


def test_files_to_parse_are_cut_into_contiguous_runs_of_at_most_the_share_asked():
    from xmlai_assets.cli import contiguous_ranges

    keys = [f"{c}.xml" for c in "abcdefgh"]
    wanted = ["a.xml", "b.xml", "c.xml", "e.xml", "f.xml", "g.xml", "h.xml"]
    assert contiguous_ranges(keys, wanted) == [("a.xml", "c.xml"), ("e.xml", "h.xml")]
    assert contiguous_ranges(keys, wanted, 2) == [
        ("a.xml", "b.xml"),
        ("c.xml", "c.xml"),
        ("e.xml", "f.xml"),
        ("g.xml", "h.xml"),
    ]
    assert contiguous_ranges(keys, []) == []


def test_a_presets_parse_settings_reach_the_parse_runs(tmp_path):
    import dagster as dg

    from xmlai_assets.cli import run_pipeline
    from xmlai_assets.paths import DataLayout
    from xmlai_assets.synth import generate_timeline
    from xmlai_assets.timeline.ingest import read_report

    layout = DataLayout.at(tmp_path)
    generate_timeline(0, seconds=5, name="a").write(layout.timelines_dir)
    preset = {"ops": {"timeline_frames": {"config": {"sample_rate_hz": 5.0}}}}
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, preset, ingest_only=True)
    report = read_report(layout, "a.xml")
    assert report["status"] == "ok" and report["sample_rate_hz"] == 5.0
