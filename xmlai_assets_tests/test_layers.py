"""The layers: the pure packages and the Pipes programs load without Dagster (a GPU host has
only dagster-pipes, torch and this package), and the code location loads without torch. A run
launched from the UI starts a new process, so what it imports is paid on every run."""

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


def loaded_after(*modules: str, then: str = "") -> set[str]:
    code = "import sys, importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += then
    code += "print(' '.join(sorted({k.split('.')[0] for k in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_pure_packages_and_pipes_programs_load_without_dagster():
    assert "dagster" not in loaded_after(*PURE)


def test_the_code_location_loads_without_torch():
    loaded = loaded_after("xmlai_assets.definitions")
    assert "dagster" in loaded and "torch" not in loaded


def test_preprocessing_imports_neither_torch_nor_scikit_learn(tmp_path):
    from xmlai_assets.paths import MASTER_CSV, DataLayout, sequences_npz
    from xmlai_assets_tests.features.frames_factory import make_master, write_master

    layout = DataLayout.at(tmp_path)
    write_master(make_master(3, [40, 30, 20, 25, 35]), layout.local(MASTER_CSV))
    run = (
        "from xmlai_assets.features.preprocess import preprocess\n"
        "from xmlai_assets.paths import DataLayout\n"
        f"preprocess(DataLayout.at({str(tmp_path)!r}), window=10, stride=8)\n"
    )
    loaded = loaded_after("xmlai_assets.definitions", then=run)
    assert layout.local(sequences_npz("test")).exists()
    assert "torch" not in loaded and "sklearn" not in loaded
