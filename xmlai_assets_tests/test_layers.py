"""The layers: the pure packages and the Pipes programs load without Dagster (a GPU host has
only dagster-pipes, torch and this package), and the code location loads without torch."""

import subprocess
import sys

PURE = (
    "xmlai_assets.timeline.ingest",
    "xmlai_assets.features.preprocess",
    "xmlai_assets.model.pipeline",
    "xmlai_assets.model.store",
    "xmlai_assets.synth",
    "xmlai_assets.paths",
    "xmlai_assets.remote.train",
    "dagster_pipes",  # what remote/train.py opens
)


def loaded_after(*modules: str) -> set[str]:
    code = "import sys, importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "print(' '.join(sorted({k.split('.')[0] for k in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_pure_packages_and_pipes_programs_load_without_dagster():
    assert "dagster" not in loaded_after(*PURE)


def test_the_code_location_loads_without_torch():
    loaded = loaded_after("xmlai_assets.definitions")
    assert "dagster" in loaded and "torch" not in loaded
