"""Synthetic Premiere-style timelines with known ground truth."""

from xmlai_assets.synth.generator import (
    PlannedClip,
    Ramp,
    SyntheticTimeline,
    Transition,
    generate_timeline,
)

__all__ = ["PlannedClip", "Ramp", "SyntheticTimeline", "Transition", "generate_timeline"]
