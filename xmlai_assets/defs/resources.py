"""Resources shared by every stage."""

import dagster as dg

from xmlai_assets.paths import DataLayout


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
