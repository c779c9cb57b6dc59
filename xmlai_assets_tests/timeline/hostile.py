"""Hostile and broken timeline files, each with the reason its error must give."""

from __future__ import annotations

from pathlib import Path

from xmlai_assets_tests.timeline.xmeml_builder import (
    center,
    clip,
    crop,
    document,
    motion,
    param,
    track,
)

SECRET = "TOP-SECRET-CONTENT-FROM-OUTSIDE"


def hostile_files(folder: Path) -> dict[str, str]:
    """Write the hostile files into `folder`; return {file name: expected reason fragment}."""
    folder.mkdir(parents=True, exist_ok=True)
    secret = folder.parent / "secret.txt"
    secret.write_text(SECRET)
    good = document(track(clip(0, 10)), duration=10)
    files = {
        "truncated.xml": (good[: len(good) // 2], "not well-formed"),
        "wrong_root.xml": ("<fcpxml version='1.9'><sequence/></fcpxml>", "not <xmeml>"),
        "billion_laughs.xml": (
            '<?xml version="1.0"?><!DOCTYPE xmeml [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;">]><xmeml version="4"><sequence><name>&c;</name>'
            "</sequence></xmeml>",
            "entities",
        ),
        "xxe_local_file.xml": (
            f'<?xml version="1.0"?><!DOCTYPE xmeml [<!ENTITY x SYSTEM "file://{secret}">]>'
            '<xmeml version="4"><sequence><name>&x;</name><duration>10</duration>'
            "<rate><timebase>10</timebase></rate></sequence></xmeml>",
            "entities",
        ),
        "external_dtd.xml": (
            f'<?xml version="1.0"?><!DOCTYPE xmeml SYSTEM "file://{secret}">'
            '<xmeml version="4"><sequence><duration>10</duration></sequence></xmeml>',
            "external DTD",
        ),
        "binary_junk.xml": (bytes(range(256)) * 8, "not well-formed"),
        "empty.xml": (b"", "empty"),
        "negative_duration.xml": (
            good.replace("<duration>10</duration>", "<duration>-5</duration>"),
            "negative duration",
        ),
        "no_clips_no_duration.xml": (
            document(track(), duration=0),
            "no clips and no duration",
        ),
        # Tiny files that ask for huge tables or overflow: refused before anything is allocated
        "huge_duration.xml": (
            good.replace("<duration>10</duration>", "<duration>1e15</duration>"),
            "beyond any timecode",
        ),
        "day_long.xml": (
            good.replace("<duration>10</duration>", "<duration>900000000</duration>"),
            "above the 24 h limit",
        ),
        "tiny_timebase.xml": (good.replace("<timebase>10<", "<timebase>1e-9<"), "timebase"),
        "huge_timebase.xml": (good.replace("<timebase>10<", "<timebase>1e308<"), "timebase"),
        "huge_in_on_keyframes.xml": (
            document(
                track(clip(0, 10, motion(param("scale", keys=[(0, 50), (9, 60)])), in_=0)),
                duration=10,
            ).replace("<in>0</in>", "<in>1e300</in>"),
            "beyond any timecode",
        ),
        "huge_clip_end.xml": (
            document(track(clip(0, 10**11)), duration=10),
            "above the 24 h limit",
        ),
        # Values outside the schema's ranges refuse the file, not the master for everyone
        "crop_150.xml": (
            document(track(clip(0, 10, crop(left=150))), duration=10),
            "crop_l reaches 150, outside 0..100",
        ),
        "scale_1e308.xml": (
            document(track(clip(0, 10, motion(param("scale", 1e308)))), duration=10),
            "scale reaches 1e+308",
        ),
        "centre_off_by_a_mile.xml": (
            document(track(clip(0, 10, motion(center(1e6, 0)))), duration=10),
            "x reaches 1e+06",
        ),
        "non_numeric_timing.xml": (
            good.replace("<start>0</start>", "<start>ten</start>"),
            "non-numeric <start>",
        ),
        "no_sequence.xml": (
            '<xmeml version="4"><project><name>empty</name></project></xmeml>',
            "no top-level <sequence>",
        ),
    }
    out = {}
    for name, (content, reason) in files.items():
        data = content.encode() if isinstance(content, str) else content
        (folder / name).write_bytes(data)
        out[name] = reason
    return out
