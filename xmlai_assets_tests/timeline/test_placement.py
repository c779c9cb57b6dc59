"""Writing a placement into a timeline: one clip's Basic Motion and Crop set statically, every
other byte unchanged, and the parser reads back exactly the placement."""

import difflib

import numpy as np
import pytest

from xmlai_assets.timeline import parse_timeline, parse_timeline_with_info
from xmlai_assets.timeline.placement import Placement, find_clip, place_clip
from xmlai_assets.timeline.xml import TimelineError
from xmlai_assets_tests.timeline import xmeml_builder as x
from xmlai_assets_tests.timeline.test_external_exports import FILES

FACE_CAM = Placement(scale=33.0, x=0.3625, y=-0.3125, crop_l=5.0, crop_t=2.5)
PRG6 = "Adobe Premiere CC Prg6.xml"


def line_changes(before: bytes, after: bytes) -> list[tuple[str, list[str], list[str]]]:
    """(kind, old lines, new lines) of every change between the two texts."""
    a, b = before.decode().splitlines(), after.decode().splitlines()
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [
        (op, a[i1:i2], b[j1:j2]) for op, i1, i2, j1, j2 in matcher.get_opcodes() if op != "equal"
    ]


def assert_placed(before_path, after_path, track: int, frames: tuple[int, int], placement):
    """The parser reads `placement` on `track` over the samples of the clip's frames and
    everything else as it was."""
    before, info = parse_timeline_with_info(before_path)
    after = parse_timeline(after_path)
    assert before.shape == after.shape
    shown = np.floor(after["time"].to_numpy() * float(info.fps) + 1e-9)  # each sample's frame
    inside = (shown >= frames[0]) & (shown < frames[1])
    assert inside.any()
    for column in before.columns:
        if column == "video_id":
            continue
        a, b = before[column].to_numpy(), after[column].to_numpy()
        name = column.removeprefix(f"target_v{track}_")
        if name in vars(placement):
            np.testing.assert_array_equal(a[~inside], b[~inside], err_msg=column)
            np.testing.assert_allclose(b[inside], getattr(placement, name), rtol=0, atol=1e-12)
        else:
            np.testing.assert_array_equal(a, b, err_msg=column)


def test_a_clip_without_motion_gains_it_and_nothing_else_changes(external_xml, tmp_path):
    source = external_xml / PRG6
    placed = tmp_path / "placed.xml"
    placed.write_bytes(place_clip(source, "clipitem-126", FACE_CAM))
    changes = line_changes(source.read_bytes(), placed.read_bytes())
    # two filters inserted after the clip's <file> and nothing else touched
    assert [kind for kind, _, _ in changes] == ["insert"]
    added = "\n".join(changes[0][2])
    assert added.count("<filter>") == 2 and "<effectid>basic</effectid>" in added
    assert "<effectid>crop</effectid>" in added
    # clipitem-126 is on V2 from frame 25901 to 25940
    assert_placed(source, placed, 2, (25901, 25940), FACE_CAM)


def test_a_clip_with_motion_gets_new_values_in_place(external_xml, tmp_path):
    source = external_xml / PRG6
    placed = tmp_path / "placed.xml"
    placed.write_bytes(place_clip(source, "clipitem-308", FACE_CAM))
    changes = line_changes(source.read_bytes(), placed.read_bytes())
    # its Basic Motion's value lines replaced (rotation and anchor point kept), a Crop added
    replaced = [line.strip() for kind, old, _ in changes if kind == "replace" for line in old]
    assert replaced and all(line.startswith(("<value>", "<horiz>", "<vert>")) for line in replaced)
    [inserted] = [new for kind, _, new in changes if kind == "insert"]
    assert "<effectid>crop</effectid>" in "\n".join(inserted)
    assert {kind for kind, _, _ in changes} == {"replace", "insert"}
    # clipitem-308 is on V4 from frame 15007 to 15168
    assert_placed(source, placed, 4, (15007, 15168), FACE_CAM)


def test_a_real_keyframed_clip_is_placed_when_asked(external_xml, tmp_path):
    source = external_xml / PRG6
    with pytest.raises(TimelineError, match="keyframed"):
        place_clip(source, "clipitem-307", FACE_CAM)
    placed = tmp_path / "placed.xml"
    placed.write_bytes(place_clip(source, "clipitem-307", FACE_CAM, replace_keyframes=True))
    assert_placed(source, placed, 4, (14865, 15007), FACE_CAM)


def test_keyframed_motion_is_replaced_only_when_asked(tmp_path):
    keyed = x.motion(x.param("scale", 50, keys=[(0, 50), (10, 80)]), x.center(0.1, 0.1))
    text = x.document(x.track(x.clip(0, 20, keyed, name="cam.mov")), duration=20)
    source = x.write(tmp_path, text)
    with pytest.raises(TimelineError, match="scale is keyframed") as refused:
        place_clip(source, "cam.mov-0", FACE_CAM)
    assert str(source) in str(refused.value)
    placed = x.write(tmp_path, "", "placed.xml")
    placed.write_bytes(place_clip(source, "cam.mov-0", FACE_CAM, replace_keyframes=True))
    assert b"<keyframe>" not in placed.read_bytes()
    assert_placed(source, placed, 1, (0, 20), FACE_CAM)


def test_the_centre_is_written_in_the_sources_units(tmp_path):
    # a 1280x720 source in a 1920x1080 sequence: Premiere normalizes the centre by the source
    small = x.file("cam", "cam.mov", size=(1280, 720))
    text = x.document(x.track(x.clip(0, 20, name="cam.mov", file_xml=small)), duration=20)
    source = x.write(tmp_path, text)
    out = place_clip(source, "cam.mov-0", FACE_CAM)
    assert f"<horiz>{0.3625 * 1920 / 1280!r}</horiz>".encode() in out
    placed = x.write(tmp_path, "", "placed.xml")
    placed.write_bytes(out)
    assert_placed(source, placed, 1, (0, 20), FACE_CAM)


def test_a_disabled_motion_filter_is_left_alone_and_an_enabled_one_added(tmp_path):
    off = x.motion(x.param("scale", 10), x.center(0.4, 0.4), enabled=False)
    text = x.document(x.track(x.clip(0, 20, off, name="cam.mov")), duration=20)
    source = x.write(tmp_path, text)
    out = place_clip(source, "cam.mov-0", FACE_CAM)
    assert out.count(b"<effectid>basic</effectid>") == 2
    assert off.encode() in out  # byte for byte
    placed = x.write(tmp_path, "", "placed.xml")
    placed.write_bytes(out)
    assert_placed(source, placed, 1, (0, 20), FACE_CAM)


@pytest.mark.parametrize(
    ("clip_id", "placement", "reason"),
    [
        ("nope", FACE_CAM, "no video clipitem with id 'nope'"),
        ("cam.mov-0", Placement(scale=33.0, x=200.0, y=0.0), "placement x 200.0 is outside"),
        ("cam.mov-0", Placement(scale=float("nan"), x=0.0, y=0.0), "placement scale nan"),
    ],
)
def test_a_bad_request_is_refused_naming_the_file(tmp_path, clip_id, placement, reason):
    source = x.write(tmp_path, x.document(x.track(x.clip(0, 20, name="cam.mov")), duration=20))
    with pytest.raises(TimelineError, match=reason) as refused:
        place_clip(source, clip_id, placement)
    assert str(source) in str(refused.value)


def test_a_hostile_file_is_refused_as_the_parser_refuses_it(tmp_path):
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE xmeml [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><xmeml version="4">&b;</xmeml>'
    )
    source = x.write(tmp_path, bomb)
    with pytest.raises(TimelineError, match="entities"):
        place_clip(source, "cam.mov-0", FACE_CAM)
    link = tmp_path / "link.xml"
    link.symlink_to(source)
    with pytest.raises(TimelineError, match="symbolic link"):
        place_clip(link, "cam.mov-0", FACE_CAM)


def test_a_clip_is_found_by_its_name_only_where_the_name_is_its_own(tmp_path):
    cams = x.track(
        x.clip(0, 25, name="cam.mov"), x.clip(50, 75, name="cam.mov"), x.clip(80, 90, name="logo")
    )
    source = x.write(tmp_path, x.document(cams, duration=100))
    assert find_clip(source, 1, name="logo").id == "logo-80"
    # two clips share the name: which one to place is the editor's to say, by its time
    with pytest.raises(TimelineError, match=r"2 clips named 'cam.mov' on V1, starting at") as two:
        find_clip(source, 1, name="cam.mov")
    assert str(source) in str(two.value) and "give the time" in str(two.value)
    assert find_clip(source, 1, at_seconds=5.5).id == "cam.mov-50"


@pytest.mark.parametrize("name", FILES)
def test_every_real_export_takes_a_placement_on_every_video_track(external_xml, tmp_path, name):
    """Premiere, Final Cut Pro 7 and Resolve exports: on each video track the clip playing at
    the middle of the track's samples takes the placement (keyframes replaced), the parser
    reads back exactly that and everything else as it was, and OpenTimelineIO reads it as it
    read the export."""
    import opentimelineio as otio

    def otio_tracks(path) -> int:
        return len(otio.adapters.read_from_file(str(path), adapter_name="fcp_xml").video_tracks())

    source = external_xml / name
    before, info = parse_timeline_with_info(source)
    tracks = otio_tracks(source)
    placed_tracks = 0
    for track in range(1, min(info.n_video_tracks, 20) + 1):
        rows = np.flatnonzero(before[f"target_v{track}_active"].to_numpy() > 0)
        if not len(rows):
            continue
        ref = find_clip(source, track, at_seconds=float(before["time"].iloc[rows[len(rows) // 2]]))
        placed = tmp_path / f"V{track}.xml"
        placed.write_bytes(place_clip(source, ref.id, FACE_CAM, replace_keyframes=True))
        assert_placed(source, placed, track, (ref.start, ref.end), FACE_CAM)
        assert otio_tracks(placed) == tracks
        placed_tracks += 1
    assert placed_tracks > 0
