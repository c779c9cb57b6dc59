"""Training in another process through Dagster Pipes (`XMLAI_TRAIN_COMMAND`): the same model
version as training in the step's process, its log lines in the run, and its failures red."""

import json
import shlex
import sys

import dagster as dg
import pytest
import torch

from xmlai_assets.cli import run_pipeline
from xmlai_assets.defs.resources import TRAIN_COMMAND_ENV
from xmlai_assets.paths import DataLayout
from xmlai_assets.synth import generate_timeline
from xmlai_assets_tests.defs.test_faults import materialization

TINY_TRAIN = {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "batch_size": 8, "epochs": 2}
REMOTE = shlex.join([sys.executable, "-m", "xmlai_assets.remote.train"])


def layout_at(folder):
    layout = DataLayout.at(folder)
    for seed in range(3):
        generate_timeline(seed, seconds=5, name=f"t{seed}").write(layout.timelines_dir)
    return layout


def train_in(layout, monkeypatch, command, settings=TINY_TRAIN):
    if command:
        monkeypatch.setenv(TRAIN_COMMAND_ENV, command)
    else:
        monkeypatch.delenv(TRAIN_COMMAND_ENV, raising=False)
    config = {"ops": {"trained_model": {"config": settings}}}
    with dg.instance_for_test() as instance:
        ok = run_pipeline(layout, instance, config)
        logs = []
        for event in instance.all_logs(instance.get_runs(limit=1)[0].run_id):
            logs.append(event.user_message)
            if event.dagster_event and event.dagster_event.is_step_failure:
                error = event.dagster_event.step_failure_data.error
                while error is not None:  # the failure and what caused it
                    logs.append(error.message)
                    error = error.cause
        md = materialization(instance, "trained_model") if ok else None
        return ok, md, logs


def test_training_through_pipes_writes_the_same_version_as_in_process(tmp_path, monkeypatch):
    here = layout_at(tmp_path / "here")
    there = layout_at(tmp_path / "there")
    ok_here, md_here, _ = train_in(here, monkeypatch, "")
    ok_there, md_there, logs = train_in(there, monkeypatch, REMOTE)
    assert ok_here and ok_there
    assert md_there["trained_in"] == REMOTE and md_here["trained_in"] == "the step's process"
    assert md_there["weights_sha256"] == md_here["weights_sha256"]
    same = ("model.safetensors", "config.json", "scalers.json", "loss_curve.png")
    for name in same:
        a = (here.models.local_path() / "v0001" / name).read_bytes()
        assert a == (there.models.local_path() / "v0001" / name).read_bytes(), name
    metadata = json.loads((there.models.local_path() / "v0001" / "metadata.json").read_text())
    assert (
        metadata["metrics"]
        == json.loads((here.models.local_path() / "v0001" / "metadata.json").read_text())["metrics"]
    )
    for key in ("epochs_run", "best_epoch", "promoted", "val_loss", "evaluation"):
        assert md_there[key] == md_here[key], key

    def losses(md):
        return [{k: v for k, v in r.data.items() if k != "seconds"} for r in md["epochs"].records]

    assert losses(md_there) == losses(md_here)
    # the program's log lines reach the run's log
    assert any(line.startswith("epoch 1/2") for line in logs)
    assert any("champion" in line or "not promoted" in line for line in logs)


def test_a_failure_in_the_training_program_fails_the_step_with_its_reason(tmp_path, monkeypatch):
    layout = layout_at(tmp_path / "data")
    ok, _, logs = train_in(layout, monkeypatch, REMOTE, {**TINY_TRAIN, "device": "cuda"})
    assert not ok
    assert any("CUDA is not available" in line for line in logs)
    assert not (layout.models.local_path() / "v0001").exists()


def test_training_in_a_pod_without_an_object_store_is_refused_with_why(tmp_path, monkeypatch):
    monkeypatch.setenv("XMLAI_TRAIN_IMAGE", "registry.example/xmlai:1")
    layout = layout_at(tmp_path / "data")
    ok, _, logs = train_in(layout, monkeypatch, "")
    assert not ok
    assert any("needs the artifacts on S3" in line for line in logs)
    assert not (layout.models.local_path() / "v0001").exists()


@pytest.mark.parametrize("command", [shlex.join([sys.executable, "-c", "pass"])])
def test_a_program_that_sends_no_summary_is_a_failure_not_a_success(tmp_path, monkeypatch, command):
    layout = layout_at(tmp_path / "data")
    ok, _, logs = train_in(layout, monkeypatch, command)
    assert not ok
    assert any("finished without its summary" in line for line in logs)


def test_two_torchrun_ranks_through_pipes_train_the_weights_of_one_process(tmp_path, monkeypatch):
    """Data parallel training: `torchrun` starts two CPU ranks (gloo), each trains on its share
    of every batch, and the first writes the version. Summed over the ranks, each step's loss
    and gradient are the whole batch's, so the weights are one process's up to the order of
    floating-point sums (without dropout, whose masks each process draws for itself)."""
    from safetensors.torch import load_file

    torchrun = shlex.join(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "xmlai_assets.remote.train"]
    )  # fmt: skip
    layouts = []
    for name in ("here", "there"):
        layout = DataLayout.at(tmp_path / name)
        for seed in range(6):  # odd batches: a last batch of one window leaves a rank empty
            generate_timeline(seed, seconds=9, name=f"t{seed}").write(layout.timelines_dir)
        layouts.append(layout)
    # no dropout: its masks are drawn per process (with it, the two are alike in distribution)
    settings = {**TINY_TRAIN, "batch_size": 3, "epochs": 3, "dropout": 0.0}
    ok_here, md_here, _ = train_in(layouts[0], monkeypatch, "", settings)
    ok_there, md_there, logs = train_in(layouts[1], monkeypatch, torchrun, settings)
    assert ok_here and ok_there, logs[-20:]
    assert md_there["trained_in"] == torchrun
    assert md_there["epochs_run"] == md_here["epochs_run"] == 3
    for column in ("train_loss", "val_loss"):
        here, there = ([r.data[column] for r in md["epochs"].records] for md in (md_here, md_there))
        assert here == pytest.approx(there, rel=1e-4)  # as the table shows them: 5 digits
    one, two = (
        load_file(lay.models.local_path() / "v0001" / "model.safetensors") for lay in layouts
    )
    assert one.keys() == two.keys()
    flat = [torch.cat([w[name].flatten() for name in sorted(w)]) for w in (one, two)]
    assert torch.allclose(flat[0], flat[1], rtol=1e-5, atol=1e-6)  # measured: 6e-7 at most
