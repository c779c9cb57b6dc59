"""Programs that run a step's work outside the Dagster process, spoken to through Dagster Pipes.
They need `dagster-pipes`, torch and this package's pure modules, not Dagster."""
