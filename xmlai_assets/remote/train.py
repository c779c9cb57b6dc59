"""The training step's work as a program of its own, started by the `trained_model` asset
through Dagster Pipes when a training command is configured (`XMLAI_TRAIN_COMMAND`).

    python -m xmlai_assets.remote.train      (started by Dagster, never by hand)

It reads where the artifacts are and the settings from the Pipes extras, trains and writes the model
version exactly as the in-process step does (`model.pipeline.fit_model`), streams each log line
to the Dagster run, and sends the summary the asset's metadata is made of as one custom message.
It needs `dagster-pipes`, torch and this package's pure modules, not Dagster.
"""

from __future__ import annotations

REPORT = "xmlai_assets/train_report"  # the custom message that carries the summary


def main() -> None:
    from dagster_pipes import open_dagster_pipes

    from xmlai_assets.model.config import TrainConfig
    from xmlai_assets.model.pipeline import fit_model
    from xmlai_assets.paths import DataLayout

    with open_dagster_pipes() as pipes:
        extras = pipes.extras
        try:
            summary = fit_model(
                DataLayout.at(
                    extras["data_dir"],
                    models_url=extras.get("models_url"),
                    data_url=extras.get("data_url"),
                ),
                TrainConfig.from_dict(extras["settings"]),
                log=pipes.log.info,
                extra_metadata=extras.get("extra_metadata"),
            )
        except Exception as exc:
            # the reason as a line of the run's log; Pipes reports the traceback beside it
            pipes.log.error(f"training failed: {type(exc).__name__}: {exc}")
            raise
        pipes.report_custom_message({"kind": REPORT, "report": summary.report()})


if __name__ == "__main__":
    main()
