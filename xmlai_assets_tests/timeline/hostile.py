"""Hostile and broken timeline files, each with the reason its error must give."""

from __future__ import annotations

from pathlib import Path

from xmlai_assets_tests.timeline.xmeml_builder import clip, document, track

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
            "non-positive duration",
        ),
        "zero_duration.xml": (
            good.replace("<duration>10</duration>", "<duration>0</duration>"),
            "non-positive duration",
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
