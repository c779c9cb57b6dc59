"""Small hand-made xmeml documents for exact-value tests."""

from __future__ import annotations

from pathlib import Path


def rate(timebase: int = 10, ntsc: bool = False) -> str:
    return f"<rate><timebase>{timebase}</timebase><ntsc>{'TRUE' if ntsc else 'FALSE'}</ntsc></rate>"


def param(pid: str, value: float | None = None, keys=(), interpolation: str | None = None) -> str:
    body = f"<parameterid>{pid}</parameterid><name>{pid}</name>"
    if value is not None:
        body += f"<value>{value}</value>"
    for when, v in keys:
        body += f"<keyframe><when>{when}</when><value>{v}</value></keyframe>"
    if interpolation:
        body += f"<interpolation><name>{interpolation}</name></interpolation>"
    return f"<parameter>{body}</parameter>"


def center(horiz: float | None = None, vert: float | None = None, keys=()) -> str:
    body = "<parameterid>center</parameterid><name>Center</name>"
    if horiz is not None:
        body += f"<value><horiz>{horiz}</horiz><vert>{vert}</vert></value>"
    for when, (h, v) in keys:
        body += f"<keyframe><when>{when}</when><value><horiz>{h}</horiz><vert>{v}</vert></value></keyframe>"
    return f"<parameter>{body}</parameter>"


def effect(effectid: str, *params: str, name: str = "Effect", enabled: bool = True) -> str:
    flag = "" if enabled else "<enabled>FALSE</enabled>"
    return (
        f"<filter>{flag}<effect><name>{name}</name><effectid>{effectid}</effectid>"
        f"{''.join(params)}</effect></filter>"
    )


def motion(*params: str, **kw) -> str:
    return effect("basic", *params, name=kw.pop("name", "Basic Motion"), **kw)


def crop(left=0, right=0, top=0, bottom=0, **kw) -> str:
    return effect(
        "crop",
        param("left", left),
        param("right", right),
        param("top", top),
        param("bottom", bottom),
        name=kw.pop("name", "Crop"),
        **kw,
    )


def file(
    fid: str,
    name: str = "clip.mov",
    size: tuple[int, int] | None = (1920, 1080),
    path: str | None = None,
    ref: bool = False,
) -> str:
    if ref:  # a later occurrence: an empty reference to the file written in full before
        return f'<file id="{fid}"/>'
    chars = ""
    if size:
        chars = (
            "<media><video><samplecharacteristics>"
            f"<width>{size[0]}</width><height>{size[1]}</height>"
            "</samplecharacteristics></video></media>"
        )
    url = path if path is not None else f"file://localhost/media/{name}"
    return f'<file id="{fid}"><name>{name}</name><pathurl>{url}</pathurl>{chars}</file>'


def clip(
    start: int,
    end: int,
    *extras: str,
    in_: int = 0,
    name: str = "clip.mov",
    enabled: bool = True,
    tag: str = "clipitem",
    file_xml: str | None = None,
) -> str:
    if file_xml is None and tag == "clipitem":
        file_xml = file(f"file-{name}", name)
    return (
        f"<{tag} id='{name}-{start}'><name>{name}</name><enabled>{'TRUE' if enabled else 'FALSE'}</enabled>"
        f"<start>{start}</start><end>{end}</end><in>{in_}</in><out>{in_ + max(end - start, 0)}</out>"
        f"{file_xml or ''}{''.join(extras)}</{tag}>"
    )


def transition(
    start: int, end: int, *, cut_point: int | None = None, alignment: str = "center"
) -> str:
    cp = f"<cutPoint>{cut_point}</cutPoint>" if cut_point is not None else ""
    return (
        f"<transitionitem><start>{start}</start><end>{end}</end><alignment>{alignment}</alignment>{cp}"
        "<effect><name>Cross Dissolve</name><effectid>Cross Dissolve</effectid></effect></transitionitem>"
    )


def track(*items: str, enabled: bool = True) -> str:
    return f"<track>{''.join(items)}<enabled>{'TRUE' if enabled else 'FALSE'}</enabled></track>"


def sequence(
    *tracks: str,
    duration: int = 100,
    timebase: int = 10,
    ntsc: bool = False,
    size: tuple[int, int] = (1920, 1080),
    name: str = "Sequence",
    seq_rate: bool = True,
    audio: tuple[str, ...] = (),
) -> str:
    return (
        f"<sequence id='seq-{name}'><name>{name}</name><duration>{duration}</duration>"
        f"{rate(timebase, ntsc) if seq_rate else ''}<media><video><format><samplecharacteristics>"
        f"{rate(timebase, ntsc)}<width>{size[0]}</width><height>{size[1]}</height>"
        f"</samplecharacteristics></format>{''.join(tracks)}</video>"
        f"<audio>{''.join(audio)}</audio></media></sequence>"
    )


def document(*tracks: str, **seq_kw) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE xmeml>\n<xmeml version="4">{sequence(*tracks, **seq_kw)}</xmeml>'


def write(tmp_path: Path, text: str, name: str = "timeline.xml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path
