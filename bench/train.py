"""Training benchmark, one run on one machine:

1. windows per second of the asset's training loop (`train()`, which also validates every
   epoch and writes checkpoints as the asset does, and again with one every epoch) against a
   bare PyTorch loop over the same model, settings, batches and data, at the default batch;
   then the scorecard's evaluation (the model and every baseline on the validation and test
   windows) against the time of an epoch and of a run;
2. on CUDA, the bare loop's throughput at large batches, eager and compiled, with MFU against
   the card's bf16 peak;
3. the full default training run (batch 16) on the 110-timeline corpus (on CUDA, or with
   --full on the CPU);
4. on CUDA (or with --full), the batch-size sweep behind the GPU preset: the default settings
   scaled to larger batches by `TrainConfig.scaled_to` (learning rate, epochs and patience
   times sqrt(batch / 16), the rate also at twice the rule), each trained in full, its best
   validation loss against the batch-16 run's; then the quickest within 2%, compiled.

    make bench            (or: .venv/bin/python bench/train.py [--corpus DIR] [--epochs N]
                                [--device cuda] [--gpu-batch 256,1024] [--full])

The machine with the GPU needs torch and the pure packages only: put the project on
PYTHONPATH and run `python bench/train.py --device cuda`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from xmlai_assets.features.preprocess import preprocess
from xmlai_assets.model.data import BatchIterator, MultiTrackDataset
from xmlai_assets.model.evaluate import (
    Priors,
    evaluate,
    evaluate_against_baselines,
    model_predictor,
)
from xmlai_assets.model.loss import training_loss
from xmlai_assets.model.train import TrainConfig, TrainResult, resolve_device, train
from xmlai_assets.model.transformer import MultiTrackTransformer, count_parameters
from xmlai_assets.paths import DataLayout, list_timeline_files, sequences_npz

# dense bf16 peak of the cards the benchmark knows, in TFLOP/s
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}
WITHIN = 0.02  # a larger batch must reach the batch-16 validation loss within this share
SWEEP = ((128, 1.0), (128, 2.0), (256, 1.0), (256, 2.0), (512, 1.0), (512, 2.0))


def corpus_sequences(folder: Path | None, tmp: str) -> DataLayout:
    from xmlai_assets.synth import generate_timeline
    from xmlai_assets.timeline.ingest import build_master_csv, ingest_timeline_file

    layout = DataLayout.at(tmp, folder)
    if folder is None:
        for seed in range(110):
            generate_timeline(seed).write(layout.timelines_dir)
    names = list_timeline_files(layout.timelines_dir)
    for name in names:
        ingest_timeline_file(layout, name)
    build_master_csv(layout, names)
    preprocess(layout)
    return layout


def bare_loop(
    data: MultiTrackDataset, config: TrainConfig, epochs: int, compiled: bool = False
) -> tuple[float, int]:
    """The least a loop with these settings must do: forward, loss, backward, clip, step, with
    the windows where the model is (on CUDA: on the device, fused AdamW). (seconds, windows
    trained on)."""
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = MultiTrackTransformer(config.architecture()).to(device).train()
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        fused=device.type == "cuda",
    )
    data = data.to(device)
    batches = BatchIterator(
        data,
        config.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        drop_last=compiled,
    )
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )
    windows = 0
    _sync(device)
    t = time.perf_counter()
    for _ in range(epochs):
        for batch in batches:
            b = batch.to(device)
            with autocast:
                outputs = forward(b.sequences, b.masks)
            loss = training_loss(outputs, b.sequences, b.masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:  # the settings' clip, as any loop with them would
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            windows += len(b.masks)
    _sync(device)
    return time.perf_counter() - t, windows


def flops_per_window(config: TrainConfig, steps: int) -> float:
    """Training FLOPs of one window: 6 per parameter per step, and the attention scores."""
    params = count_parameters(MultiTrackTransformer(config.architecture()))
    return 6.0 * params * steps + 12.0 * config.n_layers * steps * steps * config.d_model


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for card, peak in BF16_PEAK_TFLOPS.items() if card in name), None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def section(title: str, body: Callable[[], None]) -> None:
    """Run one part of the benchmark; a failure is printed and the next part still runs."""
    print(f"\n{title}", flush=True)
    try:
        body()
    except Exception:  # noqa: BLE001 - report and go on: each part stands alone
        traceback.print_exc()


def full_run(
    train_data: MultiTrackDataset, val_data: MultiTrackDataset, config: TrainConfig
) -> tuple[TrainResult, float]:
    device = resolve_device(config.device)
    _sync(device)
    t = time.perf_counter()
    result = train(train_data, val_data, config, log=lambda line: None)
    _sync(device)
    return result, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, help="folder of XML timelines (default: 110 made)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per throughput figure")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--gpu-batch", default="256,1024", help="large batches (CUDA)")
    parser.add_argument("--full", action="store_true", help="parts 3 and 4 on the CPU too")
    parser.add_argument(
        "--profile", action="store_true", help="the asset loop's busiest operations, one epoch"
    )
    parser.add_argument(
        "--settings",
        type=Path,
        help="a JSON file of TrainConfig fields to start from instead of the defaults "
        "(a smaller model, to try the benchmark out)",
    )
    args = parser.parse_args()
    base = TrainConfig(device=args.device)
    if args.settings:
        import json

        base = TrainConfig(**{**json.loads(args.settings.read_text()), "device": args.device})

    with tempfile.TemporaryDirectory() as tmp:
        layout = corpus_sequences(args.corpus, tmp)
        train_data = MultiTrackDataset.from_npz(layout.local(sequences_npz("train")))
        val_data = MultiTrackDataset.from_npz(layout.local(sequences_npz("val")))
        config = base.model_copy(update={"epochs": args.epochs, "patience": args.epochs + 1})
        device = resolve_device(config.device)
        params = count_parameters(MultiTrackTransformer(config.architecture()))
        card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(
            f"model of {params / 1e6:.2f} M parameters on {device} ({card}), "
            f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        )
        print(
            f"corpus: {len(train_data)} training and {len(val_data)} validation windows of "
            f"{train_data.sequences.shape[1]} steps"
        )
        steps = train_data.sequences.shape[1]
        peak = peak_tflops(device)
        reference: dict[str, float] = {}

        def default_batch() -> None:
            if device.type == "cuda":
                bare_loop(train_data, config, 1)  # warm-up
            bare, windows = bare_loop(train_data, config, args.epochs)
            rates = {"bare PyTorch loop": windows / bare}
            asset = f"train(), a checkpoint each {config.checkpoint_minutes:g} min"
            for label, minutes in ((asset, config.checkpoint_minutes), ("  ...each epoch", 0)):
                _sync(device)
                t = time.perf_counter()
                train(
                    train_data,
                    val_data,
                    config.model_copy(update={"checkpoint_minutes": minutes}),
                    checkpoint=Path(tmp) / f"bench{minutes}.pt",
                    log=lambda _: None,
                )
                _sync(device)
                rates[label] = len(train_data) * args.epochs / (time.perf_counter() - t)
            print(f"  batch {config.batch_size}, {args.epochs} epochs{'':14}windows/s")
            for label, rate in rates.items():
                print(f"  {label:36}{rate:9.1f}")
            ratio = rates[asset] / rates["bare PyTorch loop"]
            print(
                f"  asset / bare throughput{'':13}{ratio:9.2f}x  (target >= 0.9; the asset's "
                "loop also validates every epoch and guards every step)"
            )

        def large_batches() -> None:
            for size in (int(b) for b in args.gpu_batch.split(",")):
                big = config.model_copy(update={"batch_size": size})
                per_window = flops_per_window(big, steps)
                for label, compiled in (("eager", False), ("compiled", True)):
                    t = time.perf_counter()
                    bare_loop(train_data, big, 1, compiled)  # warm-up (and compilation)
                    warm = time.perf_counter() - t
                    seconds, windows = bare_loop(train_data, big, args.epochs * 4, compiled)
                    rate = windows / seconds
                    mfu = f"{rate * per_window / (peak * 1e12):6.1%}" if peak else "   n/a"
                    print(
                        f"  batch {size:5} {label:9}{rate:10.0f} windows/s, MFU {mfu}, "
                        f"first epoch {warm:5.1f} s   (target >= 20,000 windows/s)",
                        flush=True,
                    )

        def default_run() -> None:
            result, seconds = full_run(train_data, val_data, base)
            reference["loss"] = result.best_val_loss
            print(
                f"  batch {base.batch_size}, lr {base.learning_rate:g}: {seconds:7.1f} s, "
                f"{len(result.history)} epochs, best validation loss {result.best_val_loss:.4f} "
                f"(epoch {result.best_epoch})"
            )

        def sweep() -> None:
            quickest = None
            for size, factor in SWEEP:
                candidate = base.scaled_to(size, factor)
                result, seconds = full_run(train_data, val_data, candidate)
                loss = result.best_val_loss
                gap = loss / reference["loss"] - 1.0 if reference else float("nan")
                ok = gap <= WITHIN
                print(
                    f"  batch {size:4}, lr {candidate.learning_rate:<7g} ({factor:g}x rule), "
                    f"{candidate.epochs:3} epochs max: {seconds:6.1f} s, {len(result.history):3}"
                    f" epochs, best {loss:.4f} ({gap:+.1%} vs batch {base.batch_size})"
                    + ("" if ok else "  outside 2%"),
                    flush=True,
                )
                if ok and (quickest is None or seconds < quickest[1]):
                    quickest = (candidate, seconds)
            if quickest is None:
                print("  no larger batch came within 2% of the batch-16 loss")
                return
            if device.type != "cuda":
                return
            chosen = quickest[0].model_copy(update={"compile": True})
            result, seconds = full_run(train_data, val_data, chosen)
            first = result.history[0].seconds
            rest = [r.seconds for r in result.history[1:]]
            typical = sorted(rest)[len(rest) // 2] if rest else first
            print(
                f"  compiled, batch {chosen.batch_size}, lr {chosen.learning_rate:g}: "
                f"{seconds:6.1f} s ({first - typical:.1f} s of it compiling), "
                f"{len(result.history)} epochs, best {result.best_val_loss:.4f} "
                f"({result.best_val_loss / reference['loss'] - 1:+.1%})   (target < 20 s)"
            )

        def profile() -> None:
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as profiler

            one = config.model_copy(update={"epochs": 1})
            activities = [ProfilerActivity.CPU] + (
                [ProfilerActivity.CUDA] if device.type == "cuda" else []
            )
            with profiler(activities=activities) as prof:
                train(train_data, val_data, one, log=lambda _: None)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))

        def scorecard() -> None:
            """What the version's scorecard costs beside training: the model and every
            baseline on the validation windows (promotion; the champion once more) and on the
            test windows, as `fit_model` scores them, against the epochs of training."""
            test_data = MultiTrackDataset.from_npz(layout.local(sequences_npz("test")))
            t = time.perf_counter()
            result = train(train_data, val_data, config, log=lambda _: None)
            epoch = (time.perf_counter() - t) / len(result.history)
            t = time.perf_counter()
            priors = Priors.from_training(BatchIterator(train_data, 256, shuffle=False))
            predict = model_predictor(result.model)
            for data, champion in ((val_data, True), (test_data, False)):
                batches = list(BatchIterator(data, 64, shuffle=False))
                kwargs = {"value_scale": {}, "horizon": data.steps_per_second}
                evaluate_against_baselines(predict, batches, priors, **kwargs)
                if champion:  # as the champion is scored: the model once more
                    evaluate(predict, batches, **kwargs)
            seconds = time.perf_counter() - t
            print(f"  one epoch of training{'':15}{epoch:9.1f} s")
            print(f"  the scorecard (validation and test){'':1}{seconds:9.1f} s")
            print(
                f"  scorecard / one epoch{'':15}{seconds / epoch:9.2f}x; of a run of "
                f"{base.epochs} epochs: {seconds / (seconds + base.epochs * epoch):.1%}, of 20 "
                f"epochs: {seconds / (seconds + 20 * epoch):.1%}   (target <= 10% of a run)"
            )

        section("1. the asset's loop against a bare loop", default_batch)
        section("1c. the scorecard's evaluation against training", scorecard)
        if args.profile:
            section("1b. one epoch of the asset's loop, profiled", profile)
        if device.type == "cuda":
            section("2. large batches, bare loop", large_batches)
        if device.type == "cuda" or args.full:
            section("3. the full default run", default_run)
            section("4. larger batches, each trained in full", sweep)


if __name__ == "__main__":
    main()
