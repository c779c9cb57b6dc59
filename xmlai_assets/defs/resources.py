"""Resources shared by every stage, and the pools that keep writers of one artifact apart."""

import dagster as dg

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

    @classmethod
    def from_env(cls) -> "DataPaths":
        layout = DataLayout.from_env()
        return cls(data_dir=str(layout.data_dir), timelines_dir=str(layout.timelines_dir))

    @property
    def layout(self) -> DataLayout:
        return DataLayout.at(self.data_dir, self.timelines_dir)
