import pytest

from xmlai_assets.timeline import TimelineError, parse_timeline
from xmlai_assets_tests.timeline.hostile import SECRET, hostile_files
from xmlai_assets_tests.timeline.xmeml_builder import clip, document, track, write


@pytest.fixture
def hostile(tmp_path):
    folder = tmp_path / "in"
    return folder, hostile_files(folder)


def test_each_hostile_file_raises_timeline_error_naming_file_and_reason(hostile):
    folder, expected = hostile
    for name, reason in expected.items():
        with pytest.raises(TimelineError) as err:
            parse_timeline(folder / name)
        assert err.value.path.endswith(name), name
        assert reason in err.value.reason, (name, err.value.reason)
        assert name in str(err.value)
        assert SECRET not in str(err.value)


def test_size_cap(tmp_path):
    path = write(tmp_path, document(track(clip(0, 10)), duration=10))
    with pytest.raises(TimelineError, match="limit"):
        parse_timeline(path, max_bytes=100)
    assert len(parse_timeline(path)) == 10


def test_missing_file_is_a_timeline_error(tmp_path):
    with pytest.raises(TimelineError, match="cannot read"):
        parse_timeline(tmp_path / "gone.xml")


def test_plain_doctype_of_real_premiere_exports_is_accepted(tmp_path):
    text = document(track(clip(0, 10)), duration=10)
    assert "<!DOCTYPE xmeml>" in text
    assert len(parse_timeline(write(tmp_path, text))) == 10


def test_an_external_dtd_is_never_opened(tmp_path):
    """The parser drops whitespace between elements, which in some libxml2 settings loads the
    external subset. Here the DTD is a FIFO with no writer: opening it would block, so a
    parse that returns has not opened it."""
    import os
    import subprocess
    import sys

    fifo = tmp_path / "subset.dtd"
    os.mkfifo(fifo)
    path = write(
        tmp_path,
        document(track(clip(0, 10)), duration=10).replace(
            "<!DOCTYPE xmeml>", f'<!DOCTYPE xmeml SYSTEM "file://{fifo}">'
        ),
    )
    code = (
        "import sys\nfrom xmlai_assets.timeline import TimelineError, parse_timeline\n"
        "try:\n    parse_timeline(sys.argv[1])\nexcept TimelineError as e:\n    print(e.reason)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=30
    )
    assert "external DTD" in out.stdout, out.stderr
