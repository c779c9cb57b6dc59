"""What kind of asset a clip shows: the one rule table for the 10-class `asset` head.

Rules apply in this order, first match wins:

| rule                                                         | class |
|--------------------------------------------------------------|-------|
| `Class<n>` or `ID<n>` tag in the clip name (n = 0..9)        | n     |
| still image (png, jpg, jpeg, gif, bmp, tif, tiff, webp, psd) | 3     |
| generator, title or text clip                                | 2     |
| nested sequence                                              | 5     |
| video on V1                                                  | 0     |
| video on V2                                                  | 1     |
| any other video                                              | 4     |

To change the classes, edit `ASSET_RULES` below (or pass another `AssetRules`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from xmlai_assets.timeline.schema import N_ASSET_CLASSES


@dataclass(frozen=True)
class AssetRules:
    # A tag such as "Class3", "class_3" or "ID7"; a longer number ("ID12") is no tag.
    tag_pattern: str = r"(?<![A-Za-z])(?:class|id)[ _-]?([0-9])(?![0-9])"
    image_extensions: frozenset[str] = frozenset(
        {"png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "psd"}
    )
    text_keywords: tuple[str, ...] = (
        "text",
        "title",
        "caption",
        "subtitle",
        "テキスト",
        "タイトル",
        "字幕",
    )
    image: int = 3
    text: int = 2
    nest: int = 5
    video_by_track: dict[int, int] = field(default_factory=lambda: {1: 0, 2: 1})
    other_video: int = 4

    def __post_init__(self) -> None:
        classes = [
            self.image,
            self.text,
            self.nest,
            self.other_video,
            *self.video_by_track.values(),
        ]
        bad = [c for c in classes if not 0 <= c < N_ASSET_CLASSES]
        if bad:
            raise ValueError(f"asset classes must lie in 0..{N_ASSET_CLASSES - 1}, got {bad}")
        object.__setattr__(self, "_tag_re", re.compile(self.tag_pattern, re.IGNORECASE))


ASSET_RULES = AssetRules()


def _extension(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base else ""


def classify_asset(
    clip_name: str,
    file_name: str = "",
    *,
    track: int,
    is_generator: bool = False,
    is_nest: bool = False,
    rules: AssetRules = ASSET_RULES,
) -> int:
    """Asset class (0..9) of one clip on video track `track` (1-based)."""
    tag = rules._tag_re.search(clip_name)  # type: ignore[attr-defined]
    if tag:
        return int(tag.group(1))
    if rules.image_extensions & {_extension(file_name), _extension(clip_name)}:
        return rules.image
    lowered = clip_name.lower()
    if is_generator or any(k in lowered for k in rules.text_keywords):
        return rules.text
    if is_nest:
        return rules.nest
    return rules.video_by_track.get(track, rules.other_video)
