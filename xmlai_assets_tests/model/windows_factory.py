"""Small random windows shaped like the sequences files, for model tests."""

import torch

from xmlai_assets.model.data import MultiTrackDataset

N_TRACKS, N_PARAMS = 20, 9


def random_windows(n: int, length: int, seed: int = 0, *, pad: bool = True) -> MultiTrackDataset:
    """`n` windows of `length` steps: tracks switch on and off and change asset now and then,
    continuous values drift; when `pad`, the later windows end in padding."""
    g = torch.Generator().manual_seed(seed)
    tracks = torch.zeros(n, length, N_TRACKS, N_PARAMS)
    active = (torch.rand(n, 1, N_TRACKS, generator=g) < 0.4).float()
    flips = torch.rand(n, length, N_TRACKS, generator=g) < 0.05
    active = (active + flips.float().cumsum(1)) % 2
    active[..., 0] = 1.0  # V1 always on screen
    asset = torch.randint(0, 10, (n, 1, N_TRACKS), generator=g).float().expand(n, length, -1)
    tracks[..., 0] = active
    tracks[..., 1] = asset * active
    values = torch.randn(n, 1, N_TRACKS, 7, generator=g) + 0.1 * torch.randn(
        n, length, N_TRACKS, 7, generator=g
    ).cumsum(1)
    tracks[..., 2:] = values * active[..., None]
    masks = torch.ones(n, length, dtype=torch.bool)
    if pad:
        for i in range(n // 2, n):
            real = max(2, length - 1 - i)
            masks[i, real:] = False
    sequences = tracks.reshape(n, length, -1) * masks[..., None]
    return MultiTrackDataset(sequences, masks)
