"""Training benchmark, one run on one machine: windows per second of the asset's training loop
against a bare PyTorch loop over the same model, batches and data; on CUDA, the throughput at
a large batch, eager and compiled, with MFU against the card's bf16 peak; and the full default
training run on the 110-timeline corpus (on CUDA, or with --full on the CPU).

    make bench            (or: .venv/bin/python bench/train.py [--corpus DIR] [--epochs N]
                                [--device cuda] [--gpu-batch 1024] [--full])

The machine with the GPU needs torch and the pure packages only: put the project on
PYTHONPATH and run `python bench/train.py --device cuda`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from xmlai_assets.features.preprocess import preprocess
from xmlai_assets.model.data import BatchIterator, MultiTrackDataset
from xmlai_assets.model.loss import next_step_loss
from xmlai_assets.model.train import TrainConfig, resolve_device, train
from xmlai_assets.model.transformer import MultiTrackTransformer, count_parameters
from xmlai_assets.paths import DataLayout, list_timeline_files


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


# dense bf16 peak of the cards the benchmark knows, in TFLOP/s
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}


def bare_loop(
    data: MultiTrackDataset, config: TrainConfig, epochs: int, compiled: bool = False
) -> float:
    """The least a loop must do: forward, loss, backward, step, with the windows where the
    model is (on CUDA: on the device, fused AdamW). Returns seconds."""
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
        data, config.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )
    _sync(device)
    t = time.perf_counter()
    for _ in range(epochs):
        for batch in batches:
            b = batch.to(device)
            with autocast:
                outputs = forward(b.sequences, b.masks)
            loss, _ = next_step_loss(outputs, b.sequences, b.masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    _sync(device)
    return time.perf_counter() - t


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, help="folder of XML timelines (default: 110 made)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per measurement")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--gpu-batch", type=int, default=1024, help="the large batch (CUDA)")
    parser.add_argument("--full", action="store_true", help="the full default run on the CPU too")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        layout = corpus_sequences(args.corpus, tmp)
        train_data = MultiTrackDataset.from_npz(layout.train_sequences)
        val_data = MultiTrackDataset.from_npz(layout.val_sequences)
        config = TrainConfig(epochs=args.epochs, patience=args.epochs + 1, device=args.device)
        device = resolve_device(config.device)
        params = count_parameters(MultiTrackTransformer(config.architecture()))
        print(
            f"default model ({params / 1e6:.2f} M parameters) on {device}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        )
        print(
            f"corpus: {len(train_data)} training and {len(val_data)} validation windows of "
            f"{train_data.sequences.shape[1]} steps, batch {config.batch_size}"
        )
        windows = len(train_data) * args.epochs

        bare_loop(train_data, config, 1) if device.type == "cuda" else None  # CUDA warm-up
        bare = bare_loop(train_data, config, args.epochs)
        t = time.perf_counter()
        result = train(
            train_data,
            val_data,
            config,
            checkpoint=Path(tmp) / "bench.pt",
            log=lambda line: None,
        )
        ours = time.perf_counter() - t
        train_only = sum(r.seconds for r in result.history)
        print(f"{'':34}{'seconds':>9}{'windows/s':>11}")
        print(f"  bare PyTorch loop               {bare:9.1f}{windows / bare:11.1f}")
        print(f"  the asset's loop (train())      {ours:9.1f}{windows / ours:11.1f}")
        print(
            f"  asset / bare throughput         {bare / ours:9.2f}x   (target >= 0.9; the "
            "asset's loop also validates, checkpoints and guards every step)"
        )
        print(
            f"  epoch of the default model      {train_only / args.epochs:9.1f} s "
            f"(training and validation, mean of {args.epochs})"
        )

        steps = train_data.sequences.shape[1]
        peak = peak_tflops(device)
        if device.type == "cuda":
            big = config.model_copy(update={"batch_size": args.gpu_batch})
            per_window = flops_per_window(big, steps)
            for label, compiled in (("eager", False), ("compiled", True)):
                bare_loop(train_data, big, 1, compiled)  # warm-up (and compilation)
                seconds = bare_loop(train_data, big, args.epochs, compiled)
                rate = windows / seconds
                mfu = f"{rate * per_window / (peak * 1e12):6.1%}" if peak else "   n/a"
                print(
                    f"  batch {args.gpu_batch} {label:9}             {rate:9.0f} windows/s, "
                    f"MFU {mfu}   (target >= 20,000 windows/s)"
                )
        if device.type == "cuda" or args.full:
            full = TrainConfig(device=args.device)
            t = time.perf_counter()
            result = train(train_data, val_data, full, log=lambda line: None)
            seconds = time.perf_counter() - t
            print(
                f"  full default run                {seconds:9.1f} s, {len(result.history)} "
                f"epochs, best validation loss {result.best_val_loss:.4f}"
                + ("   (target < 20 s on CUDA)" if device.type == "cuda" else "")
            )


if __name__ == "__main__":
    main()
