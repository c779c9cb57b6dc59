"""Resources shared by every stage, and the pools that keep writers of one artifact apart."""

import os
import shlex

import dagster as dg
import pydantic

from xmlai_assets.paths import DataLayout

# One writer at a time for each shared artifact, on one machine or many: Dagster's concurrency
# pools, each limited to 1 slot in the instance (`xmlai-assets init` sets the limits; a cluster
# profile's dagster.yaml sets them with `concurrency: pools: default_limit: 1`). A run whose
# process dies frees its slot when it is marked failed.
MASTER_POOL = "master_training_data"
SPLIT_POOL = "video_split"
SCALERS_POOL = "scalers"
SEQUENCES_POOL = "training_sequences"
MODEL_POOL = "trained_model"
WRITER_POOLS = (MASTER_POOL, SPLIT_POOL, SCALERS_POOL, SEQUENCES_POOL, MODEL_POOL)


class DataPaths(dg.ConfigurableResource):
    """The data folder the pipeline reads timelines from and writes its artifacts to."""

    data_dir: str
    timelines_dir: str | None = None
    data_url: str | None = pydantic.Field(
        default=None,
        description="Where the artifacts (frames, CSVs, scalers, sequences) are written and "
        "read: a folder or an fsspec URL (s3://bucket/xmlai) that every worker sees; unset, the "
        "data folder.",
    )
    models_url: str | None = pydantic.Field(
        default=None,
        description="Where model versions are written and read: a folder or an fsspec URL "
        "(s3://bucket/models) shared by every trainer; unset, models/ in the artifact store.",
    )

    @classmethod
    def of(cls, layout: DataLayout) -> "DataPaths":
        return cls(
            data_dir=str(layout.data_dir),
            timelines_dir=str(layout.timelines_dir),
            data_url=layout.data_url,
            models_url=layout.models_url,
        )

    @classmethod
    def from_env(cls) -> "DataPaths":
        return cls.of(DataLayout.from_env())

    @property
    def layout(self) -> DataLayout:
        return DataLayout.at(self.data_dir, self.timelines_dir, self.models_url, self.data_url)


TRAIN_COMMAND_ENV = "XMLAI_TRAIN_COMMAND"
TRAIN_IMAGE_ENV = "XMLAI_TRAIN_IMAGE"
REMOTE_TRAIN = ("-m", "xmlai_assets.remote.train")


class TrainingHost(dg.ConfigurableResource):
    """Where the training step trains: in its own process (the default), in the program that
    `command` starts, or in a Kubernetes pod of `image` (PipesK8sClient); the last two are
    spoken to through Dagster Pipes: logs, failures and the summary come back to the run, and
    the model version is written to the same artifact store."""

    command: str = pydantic.Field(
        default="",
        description="A command that starts `python -m xmlai_assets.remote.train` where the "
        "training should run (another virtual environment, a container, a GPU partition's "
        "launcher) and that sees the data folder at the same path; empty: train in the "
        f"step's own process. With `image`, the pod's command. Read from {TRAIN_COMMAND_ENV}.",
    )
    image: str = pydantic.Field(
        default="",
        description="A container image with this package, torch and dagster-pipes: training "
        "runs in a Kubernetes pod of it on a GPU node, started through PipesK8sClient, the "
        "context and messages through the artifacts' S3 store (which it needs). Read from "
        f"{TRAIN_IMAGE_ENV}.",
    )
    namespace: str = pydantic.Field(
        default="",
        description="The training pod's namespace; empty: the step's own (or `default`). "
        "Read from XMLAI_TRAIN_NAMESPACE.",
    )
    secret: str = pydantic.Field(
        default="",
        description="A Kubernetes secret whose keys become the training pod's environment "
        "(the S3 credentials); empty: the pod's service account must reach the bucket. Read "
        "from XMLAI_TRAIN_SECRET.",
    )

    @classmethod
    def from_env(cls) -> "TrainingHost":
        return cls(
            command=os.environ.get(TRAIN_COMMAND_ENV, ""),
            image=os.environ.get(TRAIN_IMAGE_ENV, ""),
            namespace=os.environ.get("XMLAI_TRAIN_NAMESPACE", ""),
            secret=os.environ.get("XMLAI_TRAIN_SECRET", ""),
        )

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.command)

    @property
    def remote(self) -> bool:
        """Whether training runs outside the step's process."""
        return bool(self.command or self.image)

    @property
    def where(self) -> str:
        """Where it trains, in words (the version's `trained_in`)."""
        if self.image:
            return f"a Kubernetes pod of {self.image}"
        return self.command or "the step's process"
