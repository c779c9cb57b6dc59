"""The training step's work as a program of its own, started by the `trained_model` asset
through Dagster Pipes when a training command is configured (`XMLAI_TRAIN_COMMAND`).

    python -m xmlai_assets.remote.train      (started by Dagster, never by hand)
    torchrun --nproc-per-node N -m xmlai_assets.remote.train      (N ranks, data parallel)

It reads where the artifacts are and the settings from the Pipes extras, trains and writes the model
version exactly as the in-process step does (`model.pipeline.fit_model`), streams each log line
to the Dagster run, and sends the summary the asset's metadata is made of as one custom message.
It needs `dagster-pipes`, torch and this package's pure modules, not Dagster.
"""

from __future__ import annotations

import os

REPORT = "xmlai_assets/train_report"  # the custom message that carries the summary
# how the step speaks to this program: "files" (temporary files on a shared disk) or "s3"
# (objects in the artifacts' bucket; needs boto3 here)
PIPES_CHANNEL_ENV = "XMLAI_PIPES_CHANNEL"


def pipes_options() -> dict:
    """The context loader and message writer of the channel the step chose."""
    if os.environ.get(PIPES_CHANNEL_ENV) != "s3":
        return {}
    import boto3
    from dagster_pipes import PipesS3ContextLoader, PipesS3MessageWriter

    client = boto3.client("s3")
    return {
        "context_loader": PipesS3ContextLoader(client),
        "message_writer": PipesS3MessageWriter(client, interval=1),
    }


def main() -> None:
    """One process, or each rank of `torchrun --nproc-per-node N -m xmlai_assets.remote.train`
    (DistributedDataParallel: each rank trains on its share of every batch). The first rank
    speaks to Dagster and hands the others the settings; it alone writes the version."""
    rank, ranks = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if ranks > 1:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        if rank == 0:
            from dagster_pipes import open_dagster_pipes

            with open_dagster_pipes(**pipes_options()) as pipes:
                extras = _shared(pipes.extras, ranks)
                try:
                    summary = _fit(extras, pipes.log.info)
                except Exception as exc:
                    # the reason as a line of the run's log; Pipes reports the traceback beside
                    pipes.log.error(f"training failed: {type(exc).__name__}: {exc}")
                    raise
                pipes.report_custom_message({"kind": REPORT, "report": summary.report()})
        else:
            _fit(_shared(None, ranks), lambda line: None)
    finally:
        if ranks > 1:
            import torch

            torch.distributed.destroy_process_group()


def _shared(extras, ranks: int):
    """The first rank's Pipes extras, on every rank."""
    if ranks == 1:
        return extras
    import torch

    box = [extras]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _fit(extras: dict, log):
    from xmlai_assets.model.config import TrainConfig
    from xmlai_assets.model.pipeline import fit_model
    from xmlai_assets.paths import DataLayout

    return fit_model(
        DataLayout.at(
            extras["data_dir"],
            models_url=extras.get("models_url"),
            data_url=extras.get("data_url"),
        ),
        TrainConfig.from_dict(extras["settings"]),
        log=log,
        extra_metadata=extras.get("extra_metadata"),
    )


if __name__ == "__main__":
    main()
