"""A parsed export's tree goes back to glibc's allocator chunk by chunk, not into fastbins
that the next large allocation would have to coalesce all at once."""

import ctypes
import platform

import pytest

from xmlai_assets.timeline.xml import read_xmeml


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


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="fastbins are glibc's")
def test_a_parsed_export_leaves_nothing_in_fastbins(external_xml):
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    before = libc.mallinfo2().fsmblks  # chunks another thread freed before the parser loaded
    root = read_xmeml(external_xml / "Adobe Premiere CC Prg6.xml")
    assert len(root.find("sequence/media/video"))
    del root  # about 100,000 chunks under 128 bytes, freed before anything else allocates
    assert libc.mallinfo2().fsmblks <= before  # 13 MB more with fastbins on
