"""The artifact store: whole writes, create-only writes that one writer wins, names that stay
inside the store; the same on a local folder and on an fsspec URL (the in-memory filesystem,
which takes the object-store code path: one PUT per object, exclusive create)."""

import hashlib
import multiprocessing
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from xmlai_assets.artifacts import REMOTE_READS_IN_FLIGHT, ArtifactExists, ArtifactStore


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path):
    if request.param == "local":
        return ArtifactStore(tmp_path / "store")
    return ArtifactStore(f"memory://test-{uuid.uuid4().hex}/store")


def test_write_read_list_delete(store):
    assert store.list() == [] and not store.exists("a/b.json")
    store.write_bytes("a/b.json", b"1")
    store.write_bytes("a/b.json", b"22")  # replaces
    store.write_bytes("a/c.bin", b"3")
    store.write_bytes("top.txt", b"4")
    assert store.read_bytes("a/b.json") == b"22"
    assert store.list() == ["a", "top.txt"] and store.list("a") == ["b.json", "c.bin"]
    assert store.list("nothing") == []
    store.delete("a/c.bin")
    assert store.list("a") == ["b.json"] and not store.exists("a/c.bin")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("a/c.bin")
    assert store.location("a/b.json").endswith("store/a/b.json")


def test_a_file_written_through_a_path_lands_whole_or_not_at_all(store):
    with store.writing("t/table.csv") as tmp:
        tmp.write_bytes(b"a,b\n1,2\n")
        assert not store.exists("t/table.csv")  # nothing shows before the block ends
    assert store.read_bytes("t/table.csv") == b"a,b\n1,2\n"
    with pytest.raises(RuntimeError), store.writing("t/table.csv") as tmp:
        tmp.write_bytes(b"torn")
        raise RuntimeError("the writer failed")
    assert store.read_bytes("t/table.csv") == b"a,b\n1,2\n"  # the old one stands
    assert store.list("t") == ["table.csv"]  # and no temporary file beside it
    with store.reading("t/table.csv") as path:
        assert path.read_bytes() == b"a,b\n1,2\n" and path.name == "table.csv"
    assert store.size("t/table.csv") == 8
    assert store.sha256("t/table.csv") == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    with pytest.raises(FileNotFoundError, match="t/none.csv"), store.reading("t/none.csv"):
        pass


def test_create_is_create_only(store):
    store.create("claims/x.json", b"first")
    with pytest.raises(ArtifactExists):
        store.create("claims/x.json", b"second")
    assert store.read_bytes("claims/x.json") == b"first"
    assert store.list("claims") == ["x.json"]  # no temporary file left beside it


def assert_one_of_many_creators_wins(store: ArtifactStore, writers: int = 32) -> None:
    """`writers` threads create one name at once: exactly one succeeds, and its bytes stay."""

    def attempt(i: int) -> bool:
        try:
            store.create("race.json", str(i).encode())
            return True
        except ArtifactExists:
            return False

    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(attempt, range(writers)))
    assert sum(wins) == 1
    assert store.read_bytes("race.json") == str(wins.index(True)).encode()


def test_of_many_writers_creating_one_name_exactly_one_wins(store):
    assert_one_of_many_creators_wins(store)


def _create_in_process(args) -> bool:
    root, i = args
    try:
        ArtifactStore(root).create("race.json", str(i).encode())
        return True
    except ArtifactExists:
        return False


def test_processes_racing_on_a_local_folder_have_one_winner(tmp_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        wins = pool.map(_create_in_process, [(str(tmp_path), i) for i in range(16)])
    assert sum(wins) == 1


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../x", "", "a//b", "./a"])
def test_names_that_leave_the_store_are_refused(store, name):
    with pytest.raises(ValueError, match="not an artifact name"):
        store.write_bytes(name, b"x")
    with pytest.raises(ValueError, match="not an artifact name"):
        store.read_bytes(name)
    with pytest.raises(ValueError, match="not an artifact name"):
        store.read_each(["fine.json", name])


def test_read_each_gives_every_name_its_bytes_or_its_error(store):
    store.write_bytes("r/a.json", b"1")
    store.write_bytes("r/b.json", b"22")
    found = store.read_each(["r/b.json", "r/gone.json", "r/a.json", "r/b.json"])
    assert list(found) == ["r/b.json", "r/gone.json", "r/a.json"]  # once each, in order
    assert found["r/a.json"] == b"1" and found["r/b.json"] == b"22"
    assert isinstance(found["r/gone.json"], FileNotFoundError)
    assert store.read_each([]) == {} and store.read_each(["r/a.json"]) == {"r/a.json": b"1"}


def test_read_each_on_a_remote_store_has_its_reads_in_flight_together(monkeypatch):
    """Each read waits until all of them have begun: read one after another, the first
    would wait alone and the barrier would break."""
    store = ArtifactStore(f"memory://test-{uuid.uuid4().hex}/store")
    names = [f"r/{i}.json" for i in range(REMOTE_READS_IN_FLIGHT)]
    for name in names:
        store.write_bytes(name, name.encode())
    all_begun = threading.Barrier(len(names), timeout=30)
    read = store.read_bytes

    def read_when_all_have_begun(name, limit=None):
        all_begun.wait()
        return read(name, limit)

    monkeypatch.setattr(store, "read_bytes", read_when_all_have_begun)
    assert store.read_each(names) == {name: name.encode() for name in names}


def test_reading_each_gives_a_local_file_for_every_name_or_its_absence(store):
    store.write_bytes("t/a.bin", b"a")
    store.write_bytes("u/a.bin", b"b")  # the same file name in another folder
    with store.reading_each(["t/a.bin", "t/none.bin", "u/a.bin"]) as found:
        assert list(found) == ["t/a.bin", "t/none.bin", "u/a.bin"]
        assert found["t/a.bin"].read_bytes() == b"a" and found["u/a.bin"].read_bytes() == b"b"
        assert found["t/a.bin"].name == "a.bin"
        assert isinstance(found["t/none.bin"], FileNotFoundError)
        assert str(found["t/none.bin"]).endswith("t/none.bin")
        copies = [found["t/a.bin"], found["u/a.bin"]]
    if store.local_path() is None:
        assert not any(path.exists() for path in copies)  # the copies go with the block
    else:
        assert copies == [store.local_path("t/a.bin"), store.local_path("u/a.bin")]


def test_reading_each_on_a_remote_store_fetches_together(monkeypatch):
    store = ArtifactStore(f"memory://test-{uuid.uuid4().hex}/store")
    names = [f"t/{i}.bin" for i in range(REMOTE_READS_IN_FLIGHT)]
    for name in names:
        store.write_bytes(name, name.encode())
    all_begun = threading.Barrier(len(names), timeout=30)
    get_file = store._fs.get_file

    def get_when_all_have_begun(remote, local, **kwargs):
        all_begun.wait()
        return get_file(remote, local, **kwargs)

    monkeypatch.setattr(store._fs, "get_file", get_when_all_have_begun)
    with store.reading_each(names) as found:
        assert {name: path.read_bytes() for name, path in found.items()} == {
            name: name.encode() for name in names
        }
