"""Where the steps of a run execute, chosen by `XMLAI_EXECUTOR`:

- `in_process` (the default): every step in the run's own process, as on the command line;
- `multiprocess`: a process per step on the run's host;
- `celery`: each step a task for the Celery workers behind `XMLAI_CELERY_BROKER` (results to
  `XMLAI_CELERY_BACKEND`), on any host that has the package and the same `XMLAI_*` settings;
- `k8s`: each step a Kubernetes job (dagster-k8s), with the pod settings of its
  `dagster-k8s/config` tags.

The cluster executors come from the `cluster` extra and are imported only when chosen.
"""

from __future__ import annotations

import os

import dagster as dg

from xmlai_assets.defs.resources import TRAIN_IMAGE_ENV

EXECUTOR_ENV = "XMLAI_EXECUTOR"
EXECUTORS = ("in_process", "multiprocess", "celery", "k8s")


def executor_kind() -> str:
    """The executor `XMLAI_EXECUTOR` names (`in_process` when unset)."""
    return os.environ.get(EXECUTOR_ENV) or "in_process"


def executor_from_env() -> dg.ExecutorDefinition:
    kind = executor_kind()
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "multiprocess":
        return dg.multiprocess_executor
    if kind == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(
            {"broker": {"env": "XMLAI_CELERY_BROKER"}, "backend": {"env": "XMLAI_CELERY_BACKEND"}},
            name="celery",
        )
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"{EXECUTOR_ENV}={kind!r}: choose one of {', '.join(EXECUTORS)}")


K8S_CONFIG_TAG = "dagster-k8s/config"
GPU_RESOURCE = "nvidia.com/gpu"


def gpu_pod() -> dict:
    """What a training pod asks of Kubernetes: `XMLAI_K8S_TRAIN_GPUS` GPUs (default 1) as its
    container's limit, a node that `XMLAI_K8S_GPU_NODE_SELECTOR` (`label=value`, default
    `nvidia.com/gpu.present=true`) selects, and a toleration of the GPU nodes' taint. The
    training step's own pod (below) or the Pipes pod it starts (`XMLAI_TRAIN_IMAGE`) asks it."""
    gpus = os.environ.get("XMLAI_K8S_TRAIN_GPUS") or "1"
    selector = os.environ.get("XMLAI_K8S_GPU_NODE_SELECTOR") or "nvidia.com/gpu.present=true"
    label, _, value = selector.partition("=")
    return {
        "container_config": {"resources": {"limits": {GPU_RESOURCE: gpus}}},
        "pod_spec_config": {
            "node_selector": {label: value},
            "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
        },
    }


def training_op_tags() -> dict:
    """The training step's tags: on Kubernetes (XMLAI_EXECUTOR=k8s) its pod is the GPU pod,
    unless it starts one of its own through Pipes (`XMLAI_TRAIN_IMAGE`), when the step itself
    needs no GPU; every other step runs on ordinary nodes. None elsewhere."""
    if executor_kind() != "k8s" or os.environ.get(TRAIN_IMAGE_ENV):
        return {}
    return {K8S_CONFIG_TAG: gpu_pod()}


def runs_in_process() -> bool:
    """Whether a run's steps share its process (the command line then runs it right there)."""
    return executor_kind() == "in_process"
