"""The placement model as an asset, and a suggestion for a clip of a real export written into
a copy of it, from Python and from the command line."""

import json

import dagster as dg
import numpy as np
import pytest

from xmlai_assets.cli import main, run_pipeline
from xmlai_assets.model.store import champion, placement_store, suggest, versions
from xmlai_assets.paths import DataLayout
from xmlai_assets.synth import generate_timeline
from xmlai_assets.timeline import parse_timeline_with_info
from xmlai_assets_tests.defs.test_train_assets import TINY

PRG6 = "Adobe Premiere CC Prg6.xml"


@pytest.fixture(scope="module")
def placed_layout(tmp_path_factory):
    layout = DataLayout.at(tmp_path_factory.mktemp("placement") / "data")
    for seed in range(8):
        generate_timeline(seed, seconds=20, name=f"tl {seed}").write(layout.timelines_dir)
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, TINY)
        event = instance.get_latest_materialization_event(dg.AssetKey("placement_model"))
        md = {k: v.value for k, v in event.asset_materialization.metadata.items()}
        checks = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(dg.AssetKey("placement_model"), "beats_baselines")
        )
    return layout, md, checks.event.asset_check_evaluation


def test_the_placement_model_is_a_version_with_its_scorecard(placed_layout):
    layout, md, check = placed_layout
    store = placement_store(layout.models)
    assert versions(store) == ["v0001"] and md["version_name"] == "v0001"
    metadata = json.loads(store.read_bytes("v0001/metadata.json"))
    rows = {r.data["predictor"]: r.data for r in md["scorecard"].records}
    # the champion's next-step prediction is a baseline when there is a champion
    expected = {"model", "most_common", "nearest_neighbour"}
    expected |= {"next_step"} if champion(layout.models) else set()
    # and the model without its refinements, to show what they do
    assert set(rows) == expected | {"model_unrefined"}
    assert rows["model_unrefined"]["top3"] == pytest.approx(metadata["unrefined"]["top3"], rel=1e-3)
    assert (
        metadata["refinements"]
        == md["refinements"]
        == len(json.loads(store.read_bytes("v0001/placement.json"))["follows"])
    )
    # each track's top-3 per predictor, as in the version's metadata
    tracks = {r.data["track"]: r.data for r in md["top3_by_track"].records}
    assert tracks and set(tracks) == set(metadata["by_track"])
    assert sum(r["onsets"] for r in tracks.values()) == metadata["onsets"]["test"]
    for track, row in tracks.items():
        for name in expected:
            assert row[name] == pytest.approx(metadata["by_track"][track][name], abs=1e-3)
    assert md["scored_on"] == metadata["scored_on"] == "test"
    assert md["train_onsets"] > 0 and md["placements"] > 0
    for name, row in rows.items():
        card = metadata["unrefined"] if name == "model_unrefined" else metadata["scorecard"][name]
        assert row["top3"] == pytest.approx(card["top3"], rel=1e-3)
        assert 0.0 <= row["top1"] <= row["top3"] <= 1.0
    # the model's lead over each baseline with its interval, in the UI and in the version
    margins = {r.data["baseline"]: r.data for r in md["top3_margin"].records}
    assert set(margins) == expected - {"model"} == set(metadata["top3_margin"])
    for name, gap in margins.items():
        assert gap["difference"] == pytest.approx(rows["model"]["top3"] - rows[name]["top3"])
        assert gap["low"] <= gap["difference"] <= gap["high"]
    # the check says what the scorecard says, pass or not: a lead whose interval clears zero
    beats = all(gap["low"] > 0 for gap in margins.values())
    beats = beats and rows["model"]["log_likelihood"] > rows["most_common"]["log_likelihood"]
    assert check.passed == beats == metadata["beats_baselines"]
    assert "95% interval" in check.description


def test_a_suggestion_for_a_real_clip_is_written_into_a_copy(placed_layout, external_xml, tmp_path):
    layout, _, _ = placed_layout
    out = tmp_path / "suggested.xml"
    ref, version, found = suggest(
        external_xml / PRG6, 3, at_seconds=100.0, models=layout.models, out=out
    )
    assert ref.id == "clipitem-164" and version == "v0001"
    assert len(found) == 3 and found[0].probability >= found[1].probability >= found[2].probability
    # the copy carries the first suggestion on that clip, exactly as the parser reads it
    df, info = parse_timeline_with_info(out)
    frames = np.floor(df["time"].to_numpy() * float(info.fps) + 1e-9)
    inside = (frames >= ref.start) & (frames < ref.end)
    for name, value in found[0].as_dict().items():
        np.testing.assert_allclose(df[f"target_v3_{name}"].to_numpy()[inside], value, atol=1e-12)
    # and OpenTimelineIO, another reader, reads it
    import opentimelineio as otio

    timeline = otio.adapters.read_from_file(str(out), adapter_name="fcp_xml")
    assert len(timeline.video_tracks()) == info.n_video_tracks


def test_the_suggest_command(placed_layout, external_xml, tmp_path, monkeypatch, capsys):
    layout, _, _ = placed_layout
    monkeypatch.setenv("XMLAI_DATA_DIR", str(layout.data_dir))
    out = tmp_path / "out.xml"
    args = [str(external_xml / PRG6), "--track", "V3", "--at", "100", "--out", str(out)]
    assert main(["suggest", *args, "--top", "2"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("V3 clipitem-164 'intolerance'")
    assert [line.split(".")[0].strip() for line in printed[1:3]] == ["1", "2"]
    assert out.exists() and "wrote" in printed[-1]
    # a clip that is not there, or a version that is not, is refused with why
    assert main(["suggest", str(external_xml / PRG6), "--track", "V9", "--at", "100"]) == 1
    assert "no clip playing at 100 s on V9" in capsys.readouterr().err
    assert main(["suggest", *args[:5], "--version", "v0099"]) == 1
    assert "no such committed placement version" in capsys.readouterr().err
    # a keyframed clip (clipitem-307 on V4, frames 14865-15007 at 25 fps) is placed only
    # when asked, and the command says how
    keyed = [str(external_xml / PRG6), "--track", "4", "--at", "596", "--out", str(out)]
    assert main(["suggest", *keyed]) == 1
    assert "add --replace-keyframes" in capsys.readouterr().err
    assert main(["suggest", *keyed, "--replace-keyframes"]) == 0
    assert capsys.readouterr().out.startswith("V4 clipitem-307 'dune book.jpg'")


def test_the_run_report_shows_the_placement_scorecard(placed_layout, capsys):
    from xmlai_assets.cli import print_placement_report

    layout, md, check = placed_layout
    print_placement_report(layout)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("placement model: ") and lines[0].split()[2].endswith("v0001")
    # the predictors in the scorecard's order, each column its top-1 and top-3
    rows = [r.data for r in md["scorecard"].records if r.data["predictor"] != "model_unrefined"]
    assert lines[1].split()[2:] == [r["predictor"][:9] for r in rows]
    for line, key in zip(lines[2:4], ("top1", "top3"), strict=True):
        shown = [float(v) for v in line.split()[1:]]
        assert shown == pytest.approx([r[key] for r in rows], abs=1e-3)
    # then the verdict of the check, with the lead it rests on
    margins = {r.data["baseline"]: r.data for r in md["top3_margin"].records}
    closest = min(margins, key=lambda name: margins[name]["low"])
    verdict = "beats the baselines" if check.passed else "not clearly ahead"
    assert lines[4].strip().startswith(f"{verdict}: top-3 ")
    assert f"against {closest} " in lines[4]
