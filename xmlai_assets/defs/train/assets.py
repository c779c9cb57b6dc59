"""Train: the multi-track transformer on next-step prediction, evaluated against baselines,
and the champion: the best version so far.

torch is imported by the training step only: every other step of a run loads this module
without it.
"""

import os

import dagster as dg

from xmlai_assets.defs.executors import GPU_RESOURCE, gpu_pod, training_op_tags
from xmlai_assets.defs.ingest.assets import TIMELINE_XML
from xmlai_assets.defs.metadata import OWNERS, rounded, table, table_number, verified_sha256
from xmlai_assets.defs.resources import MODEL_POOL, REMOTE_TRAIN, DataPaths, TrainingHost
from xmlai_assets.features.split import SPLITS
from xmlai_assets.model.config import BASELINES, MODEL_VERSION, SCORECARD, TrainConfig
from xmlai_assets.remote.train import PIPES_CHANNEL_ENV, REPORT

GROUP = "train"


class TrainModelConfig(TrainConfig, dg.Config):
    """The launchpad's config: TrainConfig itself, every field with its default and its
    description (the full model)."""


CHAMPION = dg.AssetKey("champion_model")


def _evaluation_table(metrics: dict[str, dict[str, float]]) -> dg.MetadataValue:
    names = [name for name in SCORECARD if name in metrics]
    records = [
        {"metric": key, **{name: table_number(metrics[name].get(key)) for name in names}}
        for key in metrics["model"]
    ]
    return table(records, {"metric": "string"} | dict.fromkeys(names, "float"))


@dg.asset(
    deps=[*(f"{split}_sequences" for split in SPLITS), "scalers", TIMELINE_XML],
    pool=MODEL_POOL,
    op_tags=training_op_tags(),
    group_name=GROUP,
    owners=OWNERS,
    code_version=f"model-{MODEL_VERSION}",
    description="The multi-track transformer trained to predict the next step's layout of all "
    "20 tracks; each run writes an immutable data/models/v{NNNN}/ and moves the champion "
    "pointer when the model beats every baseline and the champion.",
    kinds={"pytorch"},
    check_specs=[
        dg.AssetCheckSpec(
            "promoted",
            asset="trained_model",
            description="Passes when this version became the champion: its validation loss "
            "beats every baseline of the scorecard and the current champion, the champion "
            "scored on this version's validation windows with this version's loss. A warning "
            "otherwise: the version is kept, the champion stays.",
        )
    ],
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainModelConfig,
    paths: DataPaths,
    training: TrainingHost,
):
    layout = paths.layout
    settings = TrainConfig.from_dict(config.model_dump(include=set(TrainConfig.model_fields)))
    for split in SPLITS:
        verified_sha256(context, dg.AssetKey(f"{split}_sequences"), layout)
    verified_sha256(context, dg.AssetKey("scalers"), layout, "json_sha256")
    extra = {"dagster_run_id": context.run.run_id, "dagster": dg.__version__}
    if training.remote:
        report = _train_through_pipes(context, training, layout, settings, extra)
    else:
        # torch, for this step only
        from xmlai_assets.model.pipeline import fit_model

        report = fit_model(layout, settings, log=context.log.info, extra_metadata=extra).report()
    from xmlai_assets.model.store import version_history

    # promotion decides on validation; the scorecard is the test split's (see model/pipeline.py)
    metrics, validation, history = (
        report["metrics"],
        report["validation_metrics"],
        report["history"],
    )
    promotion = report["promotion"]  # promoted, reason, previous: see model/pipeline.py
    version, location = report["version"], report["location"]
    best = next(r for r in history if r["epoch"] == report["best_epoch"])
    losses = {"val_loss": validation["model"]["loss"]}
    losses |= {f"{name}_val_loss": validation[name]["loss"] for name in BASELINES}
    if "champion" in validation:
        losses["previous_champion_val_loss"] = validation["champion"]["loss"]
    if report["scored_on"] == "test":
        losses |= {f"{name}_test_loss": metrics[name]["loss"] for name in ("model", *BASELINES)}
    losses = {k: rounded(v, 6) for k, v in losses.items()}
    png = report["loss_curve_png"]
    yield dg.MaterializeResult(
        metadata={
            "loss_curve": dg.MetadataValue.md(f"![loss curve](data:image/png;base64,{png})"),
            "version": dg.MetadataValue.path(location),
            "version_name": version,
            "promoted": promotion["promoted"],
            "promotion": promotion["reason"],
            **losses,
            "evaluation": _evaluation_table(metrics),
            "scored_on": report["scored_on"],
            "versions": table(
                version_history(layout.models),
                {"version": "string", "created": "string"}
                | dict.fromkeys(SCORECARD, "float")
                | {"promoted": "bool"},
            ),
            "parameters": report["parameters"],
            "epochs_run": len(history),
            "best_epoch": report["best_epoch"],
            "stopped_early": report["stopped_early"],
            "resumed_from_epoch": report["resumed_from_epoch"],
            "best_train_loss": rounded(best["train_loss"], 6),
            "best_val_loss": rounded(report["best_val_loss"], 6),
            "epochs": table(
                [
                    {k: rounded(v, 5) if isinstance(v, float) else v for k, v in r.items()}
                    for r in history
                ],
                {"epoch": "int", "train_loss": "float", "val_loss": "float"}
                | {"learning_rate": "float", "seconds": "float", "skipped_steps": "int"},
            ),
            "device": report["device"],
            "trained_in": training.where,
            "wall_seconds": round(report["seconds"], 2),
            "weights_bytes": report["weights_bytes"],
            "weights_sha256": report["weights_sha256"],
            "data_versions": report["data_versions"],
        },
        data_version=dg.DataVersion(report["weights_sha256"][:32]),
    )
    yield dg.AssetCheckResult(
        check_name="promoted",
        passed=promotion["promoted"],
        severity=dg.AssetCheckSeverity.WARN,
        description=promotion["reason"],
        metadata={
            **losses,
            "previous_champion": promotion["previous"] or "none",
        },
    )
    if promotion["promoted"]:
        # The champion's own asset: its latest materialization is the champion, and only it.
        context.log_event(
            dg.AssetMaterialization(
                asset_key=CHAMPION,
                description=promotion["reason"],
                metadata={
                    "version": dg.MetadataValue.path(location),
                    "version_name": version,
                    "previous_champion": promotion["previous"] or "none",
                    "reason": promotion["reason"],
                    **losses,
                    "evaluation": _evaluation_table(metrics),
                },
            )
        )


def _train_through_pipes(
    context: dg.AssetExecutionContext,
    training: TrainingHost,
    layout,
    settings: TrainConfig,
    extra: dict,
) -> dict:
    """Train in the program `training` starts (`remote/train.py`), through Dagster Pipes: a
    subprocess of `training.command`, or a Kubernetes pod of `training.image`. Its summary, or
    a failure that says what went wrong there."""
    injector, reader, channel = _pipes_channel(layout)
    extras = {
        "data_dir": str(layout.data_dir),
        "data_url": layout.artifacts.url,
        "models_url": layout.models.url,
        "settings": settings.as_dict(),
        "extra_metadata": extra,
    }
    if training.image:
        if channel != "s3":
            raise dg.Failure(
                f"training in a Kubernetes pod of {training.image} needs the artifacts on S3 "
                f"(XMLAI_DATA_URL=s3://...): the pod shares no disk with this step, and the "
                f"store is {layout.artifacts.url}"
            )
        from dagster_k8s import PipesK8sClient

        extras["data_dir"] = POD_SCRATCH  # the pod's own disk: the checkpoint alone
        invocation = PipesK8sClient(context_injector=injector, message_reader=reader).run(
            context=context, extras=extras, **training_pod(training, {PIPES_CHANNEL_ENV: channel})
        )
    else:
        invocation = dg.PipesSubprocessClient(context_injector=injector, message_reader=reader).run(
            context=context,
            command=training.argv,
            env={PIPES_CHANNEL_ENV: channel},
            extras=extras,
        )
    reports = [
        m["report"]
        for m in invocation.get_custom_messages()
        if isinstance(m, dict) and m.get("kind") == REPORT
    ]
    if len(reports) != 1:
        raise dg.Failure(
            f"the training program ({training.where}) finished without its summary "
            f"({len(reports)} sent): is it `python -m xmlai_assets.remote.train`?"
        )
    return reports[0]


POD_SCRATCH = "/tmp/xmlai-training"
# what the training pod is told of the object store, when the step knows it
S3_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")


def training_pod(training: TrainingHost, env: dict[str, str]) -> dict:
    """`PipesK8sClient.run`'s pod arguments: the image, the command (`torchrun` over the GPUs
    when the pod has several), the GPU pod of `executors.gpu_pod`, the S3 credentials from
    the configured secret and `env` with the step's S3 endpoint and region."""
    pod = gpu_pod()
    gpus = pod["container_config"]["resources"]["limits"][GPU_RESOURCE]
    if training.command:
        command = training.argv
    elif gpus == "1":
        command = ["python", *REMOTE_TRAIN]
    else:
        command = ["torchrun", "--standalone", f"--nproc-per-node={gpus}", *REMOTE_TRAIN]
    container = dict(pod["container_config"])
    if training.secret:
        container["env_from"] = [{"secret_ref": {"name": training.secret}}]
    return {
        "image": training.image,
        "command": command,
        "namespace": training.namespace or None,
        "env": {k: os.environ[k] for k in S3_ENV if os.environ.get(k)} | env,
        "base_pod_spec": {**pod["pod_spec_config"], "containers": [container]},
    }


def _pipes_channel(layout) -> tuple:
    """How the step and the training program speak: through the object store that holds the
    artifacts (the context and the messages as S3 objects under its `pipes/`, so the program
    may run on a host that shares no disk with the step; the session removes them when it
    ends), or through temporary files on a local store."""
    url = layout.artifacts.url
    if not url.startswith("s3://"):
        return None, None, "files"
    import contextlib

    import boto3
    from dagster_aws.pipes import PipesS3ContextInjector, PipesS3MessageReader

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    client = boto3.client("s3")  # AWS_ENDPOINT_URL and the credentials from the environment
    key_prefix = f"{prefix}/pipes".lstrip("/")

    class Reader(PipesS3MessageReader):
        """The message chunks under the store's `pipes/` too, not at the bucket's root, and
        removed once the session has read them."""

        @contextlib.contextmanager
        def get_params(self):
            with super().get_params() as params:
                chunks = f"{key_prefix}/{params['key_prefix']}"
                try:
                    yield {**params, "key_prefix": chunks}
                finally:  # the reading thread has stopped: every chunk is read
                    pages = client.get_paginator("list_objects_v2")
                    for page in pages.paginate(Bucket=bucket, Prefix=f"{chunks}/"):
                        for item in page.get("Contents", []):
                            client.delete_object(Bucket=bucket, Key=item["Key"])

    class Injector(PipesS3ContextInjector):
        """The context removed however the session ends, not only when it succeeds."""

        @contextlib.contextmanager
        def inject_context(self, context):
            with contextlib.ExitStack() as stack:
                params = stack.enter_context(super().inject_context(context))
                stack.callback(client.delete_object, Bucket=bucket, Key=params["key"])
                yield params

    return (
        Injector(bucket=bucket, client=client, key_prefix=f"{key_prefix}/"),
        Reader(bucket=bucket, client=client, interval=1),
        "s3",
    )


champion_model = dg.AssetSpec(
    CHAMPION,
    deps=[trained_model],
    group_name=GROUP,
    owners=OWNERS,
    description="The model version to use (data/models/champion). The training step "
    "materializes it when a new version beats every baseline and the champion "
    "before it on the same validation windows; its latest materialization names the "
    "champion, so the UI never shows an old version as the current one.",
    kinds={"pytorch"},
)
