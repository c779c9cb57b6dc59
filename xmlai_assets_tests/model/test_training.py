"""Training: repeatable, resumable to the bit, guarded against non-finite steps; versions
round-trip; a tiny model can overfit one batch."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from xmlai_assets.model.data import BatchIterator, MultiTrackDataset, collate
from xmlai_assets.model.loss import next_step_loss
from xmlai_assets.model.store import (
    ModelStoreError,
    champion,
    load_model,
    predict,
    save_version,
    set_champion,
    versions,
)
from xmlai_assets.model.train import TrainConfig, TrainingError, train
from xmlai_assets.model.transformer import ModelConfig, MultiTrackTransformer
from xmlai_assets_tests.model.windows_factory import random_windows

TINY = dict(
    d_model=32,
    n_heads=4,
    n_layers=2,
    d_ff=64,
    batch_size=4,
    learning_rate=3e-3,
    checkpoint_minutes=0,  # a checkpoint after every epoch
)


def quiet(_line):
    pass


@pytest.fixture(scope="module")
def data():
    return random_windows(12, 16, seed=1), random_windows(4, 16, seed=2)


def test_a_seeded_cpu_run_repeats_exactly(data):
    config = TrainConfig(**TINY, epochs=2)
    a = train(*data, config, log=quiet)
    b = train(*data, config, log=quiet)
    for (name, x), y in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y), name
    assert [r.val_loss for r in a.history] == [r.val_loss for r in b.history]


@pytest.mark.parametrize("schedule", ["cosine", "step", "plateau"])
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, data, schedule):
    config = TrainConfig(**TINY, epochs=4, schedule=schedule, dropout=0.1, step_epochs=1)
    whole = train(*data, config, log=quiet)

    class Crash(Exception):
        pass

    def crash_after_two(record):
        if record.epoch == 2:
            raise Crash

    checkpoint = tmp_path / "ckpt.pt"
    with pytest.raises(Crash):
        train(
            *data,
            config,
            checkpoint=checkpoint,
            data_version="d1",
            log=quiet,
            after_epoch=crash_after_two,
        )
    lines = []
    resumed = train(*data, config, checkpoint=checkpoint, data_version="d1", log=lines.append)
    assert resumed.resumed_from_epoch == 2
    assert any("resuming after epoch 2" in line for line in lines)
    assert [r.val_loss for r in resumed.history] == [r.val_loss for r in whole.history]
    for x, y in zip(
        whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y)


def test_each_checkpoint_is_handed_on_once_written(tmp_path, data):
    checkpoint, seen = tmp_path / "ckpt.pt", []

    def on_checkpoint(path):
        seen.append((path, torch.load(path, weights_only=True)["state"]["epoch"]))

    train(
        *data,
        TrainConfig(**TINY, epochs=3),
        checkpoint=checkpoint,
        data_version="d1",
        log=quiet,
        on_checkpoint=on_checkpoint,
    )
    assert seen == [(checkpoint, 1), (checkpoint, 2), (checkpoint, 3)]


def test_a_checkpoint_of_other_settings_or_data_is_not_resumed(tmp_path, data):
    checkpoint = tmp_path / "ckpt.pt"
    train(*data, TrainConfig(**TINY, epochs=1), checkpoint=checkpoint, data_version="d1", log=quiet)
    lines = []
    other = train(
        *data,
        TrainConfig(**TINY, epochs=1),
        checkpoint=checkpoint,
        data_version="d2",
        log=lines.append,
    )
    assert other.resumed_from_epoch == 0
    assert "checkpoint is of other settings or data: starting over" in lines
    state = torch.load(checkpoint, weights_only=True)  # loads without running code
    assert state["state"]["epoch"] == 1


def poisoned(train_data, value=float("nan"), everywhere=False):
    """The training windows with one value (or every value) made non-finite."""
    sequences = train_data.sequences.clone()
    if everywhere:
        sequences[:] = value
    else:
        sequences[0, 3, 2] = value
    return MultiTrackDataset(sequences, train_data.masks)


@pytest.mark.parametrize("on_device", [False, True])
def test_non_finite_steps_are_skipped_and_a_run_of_them_stops_training(data, on_device):
    # on_device: the loop CUDA uses (fused AdamW, the flag read back every few steps), here
    # on the CPU
    train_data, val_data = data
    lines = []
    result = train(
        poisoned(train_data),
        val_data,
        TrainConfig(**TINY, epochs=2, guard_every=2),
        log=lines.append,
        deferred_guard=on_device,
    )
    assert [r.skipped_steps for r in result.history] == [1, 1]
    message = "1 steps skipped (non-finite)" if on_device else "non-finite loss; step skipped"
    assert any(message in line for line in lines)
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert all(math.isfinite(r.train_loss) for r in result.history)

    # the device loop reads the flag every 2 steps, so it may stop one step later
    where = r"step [34]: [34]" if on_device else r"step 3: 3"
    with pytest.raises(TrainingError, match=rf"epoch 1, {where} non-finite losses or gradients"):
        train(
            poisoned(train_data, float("inf"), everywhere=True),
            val_data,
            TrainConfig(**TINY, epochs=1, max_bad_steps=3, guard_every=2),
            log=quiet,
            deferred_guard=on_device,
        )


def test_a_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    batch = random_windows(4, 12, seed=3, pad=False)
    model = MultiTrackTransformer(
        ModelConfig(d_model=64, n_heads=4, n_layers=2, d_ff=128, dropout=0.0)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss, _ = next_step_loss(model(batch.sequences, batch.masks), batch.sequences, batch.masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]


def test_predictions_do_not_depend_on_the_rest_of_the_batch():
    torch.manual_seed(0)
    model = MultiTrackTransformer(ModelConfig(d_model=32, n_heads=4, n_layers=2, d_ff=64)).eval()
    data = random_windows(5, 9, seed=4)
    together = model(data.sequences, data.masks)
    for i in range(5):
        alone = model(data.sequences[i : i + 1], data.masks[i : i + 1])
        real = data.masks[i]
        for head, value in alone.items():
            torch.testing.assert_close(
                value[0][real], together[head][i][real], rtol=1e-5, atol=1e-5
            )


def test_loader_keeps_masks_aligned_and_covers_every_window(data):
    train_data, _ = data
    seen = []
    for batch in BatchIterator(
        train_data, 5, shuffle=True, generator=torch.Generator().manual_seed(0)
    ):
        for seq, mask in zip(batch.sequences, batch.masks, strict=True):
            i = next(j for j in range(len(train_data)) if torch.equal(train_data.sequences[j], seq))
            assert torch.equal(train_data.masks[i], mask)
            seen.append(i)
    assert sorted(seen) == list(range(len(train_data)))
    short = collate([(torch.ones(3, 180), torch.ones(3, dtype=torch.bool)), train_data[0]])
    assert short.masks[0].tolist() == [True] * 3 + [False] * 13
    assert not short.sequences[0, 3:].any()


def test_a_version_round_trips_to_identical_predictions(tmp_path, data):
    result = train(*data, TrainConfig(**TINY, epochs=1), log=quiet)
    scalers = tmp_path / "scalers.json"
    params = {
        p: {"center": 10.0 * i, "scale": 2.0 + i}
        for i, p in enumerate(["scale", "x", "y", "crop_l", "crop_r", "crop_t", "crop_b"])
    }
    scalers.write_text(json.dumps({"params": params}))
    models = tmp_path / "models"
    first = save_version(
        models, result.model, config={}, metadata={"m": 1}, scalers_json=scalers.read_bytes()
    )
    second = save_version(
        models, result.model, config={}, metadata={"m": 2}, scalers_json=scalers.read_bytes()
    )
    assert [first.name, second.name] == ["v0001", "v0002"] == versions(models)
    with pytest.raises(ModelStoreError, match="no champion"):
        load_model("champion", models)
    set_champion(models, "v0002")
    assert champion(models) == "v0002"

    loaded = load_model("champion", models)
    assert loaded.version == "v0002" and loaded.metadata == {"m": 2}
    window = np.zeros((16, 180))
    window[:, 0::9] = 1.0
    window[:, 2::9] = 120.0  # scale in CSV units
    window[:, 3::9] = 14.0
    got = predict(loaded, window)
    # the same by hand: normalize with the version's scalers, run the trained model
    inputs = torch.from_numpy(loaded.normalize(window))[None]
    with torch.no_grad():
        out = result.model(inputs, torch.ones(1, 16, dtype=torch.bool))
    on = torch.softmax(out["active"][0, -1], -1)[:, 1].numpy()
    np.testing.assert_allclose(got.active_prob, on, rtol=1e-6)
    expected_x = out["x"][0, -1].double().numpy() * 3.0 + 10.0
    np.testing.assert_allclose(got.values[3::9][on >= 0.5], expected_x[on >= 0.5], rtol=1e-6)
    assert (got.values[2::9][on < 0.5] == 100.0).all()  # tracks predicted off hold placeholders
    with pytest.raises(ModelStoreError, match="v0009"):
        load_model("v0009", models)


KILLED_RUN = """
import sys, torch
from xmlai_assets.model.train import TrainConfig, train
from xmlai_assets_tests.model.windows_factory import random_windows
config = TrainConfig(**{tiny}, epochs=6, dropout=0.1)
train(random_windows(12, 16, seed=1), random_windows(4, 16, seed=2), config,
      checkpoint=sys.argv[1], data_version="d1", log=lambda line: None,
      after_epoch=lambda record: __import__("time").sleep(0.3))
"""


def test_a_run_killed_mid_training_resumes_from_its_last_checkpoint(tmp_path, data):
    import os
    import signal
    import subprocess
    import sys
    import time

    checkpoint = tmp_path / "ckpt.pt"
    script = KILLED_RUN.format(tiny=TINY)
    proc = subprocess.Popen([sys.executable, "-c", script, str(checkpoint)], cwd=os.getcwd())
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # the checkpoint is whole (written then renamed), whatever the kill interrupted

    config = TrainConfig(**TINY, epochs=6, dropout=0.1)
    resumed = train(*data, config, checkpoint=checkpoint, data_version="d1", log=quiet)
    whole = train(*data, config, log=quiet)
    assert 1 <= resumed.resumed_from_epoch < 6
    for x, y in zip(
        whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y)


def test_version_files_are_strict_json_even_when_a_metric_is_undefined(tmp_path, data):
    result = train(*data, TrainConfig(**TINY, epochs=1), log=quiet)
    scalers = tmp_path / "scalers.json"
    scalers.write_text(json.dumps({"params": {}}))
    saved = save_version(
        tmp_path / "models",
        result.model,
        config={},
        metadata={"metrics": {"crop_b_mae_move": float("nan"), "loss": 0.5}},
        scalers_json=scalers.read_bytes(),
    )
    text = (Path(saved.location) / "metadata.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["metrics"] == {"crop_b_mae_move": None, "loss": 0.5}


def test_the_device_loop_repeats_exactly_and_learns(data):
    config = TrainConfig(**TINY, epochs=3)
    a = train(*data, config, log=quiet, deferred_guard=True)
    b = train(*data, config, log=quiet, deferred_guard=True)
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert a.history[-1].train_loss < a.history[0].train_loss


def test_a_checkpoint_of_these_settings_that_does_not_fit_is_set_aside(tmp_path, data):
    config = TrainConfig(**TINY, epochs=2)
    whole = train(*data, config, log=quiet)

    class Crash(Exception):
        pass

    def crash(record):
        raise Crash

    checkpoint = tmp_path / "ckpt.pt"
    with pytest.raises(Crash):
        train(*data, config, checkpoint=checkpoint, data_version="d", log=quiet, after_epoch=crash)
    saved = torch.load(checkpoint, weights_only=True)
    saved["model"] = {"nonsense": torch.zeros(3)}  # right key, weights of no such model
    torch.save(saved, checkpoint)
    lines = []
    again = train(*data, config, checkpoint=checkpoint, data_version="d", log=lines.append)
    assert any("is unusable" in line for line in lines)
    assert checkpoint.with_name("ckpt.pt.unusable").exists()
    assert again.resumed_from_epoch == 0
    for x, y in zip(
        whole.model.state_dict().values(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y)  # started over: the same weights as a run from scratch
