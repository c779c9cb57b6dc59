"""Model versions on an artifact store: claimed numbers never collide, a version is seen only once
committed, the champion moves by compare-and-swap, and all of it works on a URL as on a folder."""

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from xmlai_assets.artifacts import ArtifactStore
from xmlai_assets.model.store import (
    ModelStoreError,
    StaleChampion,
    champion,
    champion_generation,
    champion_history,
    load_model,
    save_version,
    set_champion,
    version_history,
    versions,
)
from xmlai_assets.model.transformer import ModelConfig, MultiTrackTransformer
from xmlai_assets.timeline.schema import CONTINUOUS_PARAMS


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path):
    if request.param == "local":
        return ArtifactStore(tmp_path / "models")
    return ArtifactStore(f"memory://models-{uuid.uuid4().hex}")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MultiTrackTransformer(ModelConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32)).eval()


@pytest.fixture
def scalers(tmp_path):
    path = tmp_path / "scalers.json"
    params = {p: {"center": float(i), "scale": 1.0 + i} for i, p in enumerate(CONTINUOUS_PARAMS)}
    path.write_text(json.dumps({"params": params}))
    return path


def save(store, model, scalers, **metadata):
    return save_version(
        store, model, config={}, metadata=metadata, scalers_json=scalers.read_bytes()
    )


def test_a_version_round_trips_through_the_store(store, model, scalers):
    saved = save(store, model, scalers, m=1)
    assert saved.name == "v0001" and versions(store) == ["v0001"]
    assert saved.location == store.location("v0001")
    loaded = load_model("v0001", store)
    assert loaded.metadata == {"m": 1} and loaded.location == saved.location
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor)
    np.testing.assert_array_equal(loaded.center, np.arange(7.0))


def test_a_claimed_but_uncommitted_version_is_seen_by_nothing(store, model, scalers):
    store.create("v0001/claim.json", b"{}")
    store.write_bytes("v0001/model.safetensors", b"half")
    assert versions(store) == []
    with pytest.raises(ModelStoreError):
        set_champion(store, "v0001")
    # and its number is not handed out again
    assert save(store, model, scalers).name == "v0002"
    assert versions(store) == ["v0002"]


def test_writers_saving_at_once_get_distinct_versions(store, model, scalers):
    with ThreadPoolExecutor(6) as pool:
        saved = list(pool.map(lambda i: save(store, model, scalers, i=i), range(12)))
    names = [s.name for s in saved]
    assert sorted(names) == [f"v{i:04d}" for i in range(1, 13)] == versions(store)
    for s in saved:  # each number holds the metadata of the writer that claimed it
        i = next(k for k, t in enumerate(saved) if t is s)
        assert json.loads(store.read_bytes(f"{s.name}/metadata.json")) == {"i": i}


def test_a_swap_decided_against_a_champion_that_has_moved_is_refused(store, model, scalers):
    for _ in range(3):
        save(store, model, scalers, metrics={})
    assert champion(store) is None and champion_generation(store) == 0
    read_by_a = read_by_b = champion_generation(store)
    assert set_champion(store, "v0001", generation=read_by_a) == 1
    with pytest.raises(StaleChampion, match="moved to v0001"):
        set_champion(store, "v0002", generation=read_by_b)
    assert champion(store) == "v0001"
    assert set_champion(store, "v0003", generation=1) == 2
    assert champion_history(store) == [
        {"generation": 1, "version": "v0001", "replaces": None},
        {"generation": 2, "version": "v0003", "replaces": "v0001"},
    ]
    rows = {r["version"]: r["promoted"] for r in version_history(store)}
    assert rows == {"v0001": True, "v0002": False, "v0003": True}


def test_of_swaps_racing_from_one_generation_exactly_one_lands(store, model, scalers):
    names = [save(store, model, scalers).name for _ in range(8)]

    def swap(name: str) -> bool:
        try:
            set_champion(store, name, generation=0)
            return True
        except StaleChampion:
            return False

    with ThreadPoolExecutor(8) as pool:
        landed = list(pool.map(swap, names))
    assert sum(landed) == 1 and champion_generation(store) == 1
    assert champion(store) == names[landed.index(True)]


def test_a_hostile_pointer_is_refused_never_followed(store, model, scalers):
    save(store, model, scalers)
    set_champion(store, "v0001")
    for content in (b"../../etc", b'{"version": "/etc/passwd"}', b'{"version": 1}', b"{", b""):
        store.write_bytes("champions/00000002.json", content)
        with pytest.raises(ModelStoreError):
            champion(store)
        with pytest.raises(ModelStoreError):
            load_model("champion", store)
    # a damaged pointer is replaced by the next swap, not read
    assert set_champion(store, "v0001") == 3 and champion(store) == "v0001"


def test_an_old_stores_single_pointer_is_the_champion_until_the_first_swap(store, model, scalers):
    save(store, model, scalers)
    save(store, model, scalers)
    store.write_bytes("champion", b"v0001\n")
    assert champion(store) == "v0001" and champion_generation(store) == 0
    set_champion(store, "v0002", generation=0)
    assert champion(store) == "v0002"
    assert champion_history(store)[0] == {"generation": 0, "version": "v0001", "replaces": None}
    assert champion_history(store)[1]["replaces"] == "v0001"
