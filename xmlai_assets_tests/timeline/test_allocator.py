"""While it parses, the parser frees a tree chunk by chunk instead of into glibc's fastbins
(which the next large allocation would have to coalesce all at once), and gives the fastbins
back afterwards."""

import ctypes
import platform

import pytest

from xmlai_assets.timeline import parse_timeline, parser, xml
from xmlai_assets.timeline.xml import read_xmeml, small_chunks_freed_at_once


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",  # bytes in freed fastbin chunks
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@pytest.fixture
def mallinfo():
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("fastbins are glibc's")
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2


def tree_bytes(path, mallinfo) -> int:
    """What the tree of `path` holds, freed before anything else allocates."""
    before = mallinfo().uordblks
    root = read_xmeml(path)
    held = mallinfo().uordblks - before
    assert len(root.find("sequence/media/video"))
    del root  # about 100,000 chunks under 128 bytes
    return held


def test_a_tree_freed_while_parsing_leaves_nothing_in_fastbins(external_xml, mallinfo):
    prg6 = external_xml / "Adobe Premiere CC Prg6.xml"
    with small_chunks_freed_at_once() as off:
        assert off
        with small_chunks_freed_at_once():
            pass  # a scope inside another leaves them off
        before = mallinfo().fsmblks
        assert tree_bytes(prg6, mallinfo) > 5_000_000
        assert mallinfo().fsmblks <= before  # 13 MB more with fastbins on
    before = mallinfo().fsmblks
    tree_bytes(prg6, mallinfo)
    assert mallinfo().fsmblks > before + 1_000_000  # they are back


def test_parse_timeline_frees_its_tree_before_the_fastbins_come_back(
    external_xml, mallinfo, monkeypatch
):
    prg6 = external_xml / "Adobe Premiere CC Prg6.xml"
    tree = tree_bytes(prg6, mallinfo)
    events, held_when_back = [], []
    mallopt, read = xml._MALLOPT, parser.read_xmeml

    def spy_mallopt(param: int, value: int) -> int:
        events.append("on" if value else "off")
        if value:  # the fastbins come back: what is still allocated then
            held_when_back.append(mallinfo().uordblks)
        return mallopt(param, value)

    def spy_read(*args, **kwargs):
        events.append("parse")
        return read(*args, **kwargs)

    monkeypatch.setattr(xml, "_MALLOPT", spy_mallopt)
    monkeypatch.setattr(parser, "read_xmeml", spy_read)
    before = mallinfo().uordblks
    frame = parse_timeline(prg6)
    returned = mallinfo().uordblks - before  # the frame, which outlives the call
    assert len(frame) and events == ["off", "parse", "on"]
    assert held_when_back[0] - before < returned + tree / 2  # the tree was freed by then
