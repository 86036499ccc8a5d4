"""Synthetic pedestrians: a stable per-person appearance rendered in either modality.

A person is a body (proportions), garments (colours, infrared reflectances,
patterns), skin, hair, shoes and an optional bag. The visible rendering uses the
colours; the infrared one is colourless, its intensity for each part mostly an
independent per-person reflectance (only partly the visible luminance), so
shape, proportions, pattern geometry and the bag carry identity across the
modalities while intensities do not. Cameras differ in background, gain, colour
cast, contrast, blur and noise (a fixed function of camera id and modality);
each image adds pose, scale and crop jitter, illumination, noise and
occasionally an occluder.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vireid.data.splits import Modality

PATTERNS = ("plain", "horizontal stripes", "vertical stripes", "checks", "logo")
_LUMINANCE = np.array([0.299, 0.587, 0.114])
_VISIBLE_SHARE_IN_INFRARED = 0.5  # how much of the visible luminance the infrared intensity keeps


@dataclass(frozen=True)
class Garment:
    colour: np.ndarray  # (3,) RGB in 0..1
    second_colour: np.ndarray  # (3,) the pattern's other colour
    infrared: float  # reflectance in 0..1
    second_infrared: float
    pattern: int  # index into PATTERNS
    frequency: float  # pattern cycles over the garment
    phase: float


@dataclass(frozen=True)
class PersonAppearance:
    height: float  # body height as a fraction of the image height
    shoulder_width: float  # as fractions of the body height
    hip_width: float
    torso_length: float
    head_radius: float
    leg_gap: float
    skin: np.ndarray  # (3,)
    skin_infrared: float
    hair: np.ndarray  # (3,)
    hair_infrared: float
    hair_length: float  # 0 short .. 1 long (hair over the shoulders)
    upper: Garment
    lower: Garment
    long_sleeves: bool
    trouser_length: float  # where the lower garment ends, as a fraction of the leg
    shoes: np.ndarray  # (3,)
    shoes_infrared: float
    bag_side: int  # 0 none, -1 left, +1 right
    bag: np.ndarray  # (3,)
    bag_infrared: float
    bag_size: float


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A garment colour: saturated or muted hues and greys, as clothes are."""
    if rng.random() < 0.3:
        return np.full(3, rng.uniform(0.05, 0.95))
    hue = rng.uniform(0, 6)
    saturation, value = rng.uniform(0.3, 1.0), rng.uniform(0.2, 1.0)
    channel = np.clip(np.abs((hue - np.array([3.0, 1.0, 5.0])) % 6 - 3) - 1, 0, 1)  # hue wheel
    return value * (1 - saturation + saturation * channel)


def _garment(rng: np.random.Generator, patterns: tuple[int, ...]) -> Garment:
    return Garment(
        colour=_colour(rng),
        second_colour=_colour(rng),
        infrared=float(rng.uniform(0.1, 0.95)),
        second_infrared=float(rng.uniform(0.1, 0.95)),
        pattern=int(rng.choice(patterns)),
        frequency=float(rng.uniform(2.0, 6.0)),
        phase=float(rng.uniform(0, 1)),
    )


def sample_appearance(rng: np.random.Generator) -> PersonAppearance:
    """Draw one person."""
    skin_tone = rng.uniform(0.3, 0.95)
    return PersonAppearance(
        height=float(rng.uniform(0.8, 0.95)),
        shoulder_width=float(rng.uniform(0.2, 0.3)),
        hip_width=float(rng.uniform(0.15, 0.23)),
        torso_length=float(rng.uniform(0.3, 0.4)),
        head_radius=float(rng.uniform(0.055, 0.075)),
        leg_gap=float(rng.uniform(0.01, 0.05)),
        skin=np.array([skin_tone, skin_tone * 0.8, skin_tone * 0.65]),
        skin_infrared=float(rng.uniform(0.55, 0.9)),
        hair=np.full(3, rng.uniform(0.05, 0.6)) * np.array([1.0, 0.85, 0.7]),
        hair_infrared=float(rng.uniform(0.1, 0.5)),
        hair_length=float(rng.uniform(0, 1)),
        upper=_garment(rng, (0, 1, 2, 3, 4)),
        lower=_garment(rng, (0, 0, 1, 2)),
        long_sleeves=bool(rng.random() < 0.6),
        trouser_length=float(rng.choice([0.45, 1.0], p=[0.3, 0.7])),
        shoes=np.full(3, rng.uniform(0.02, 0.9)),
        shoes_infrared=float(rng.uniform(0.05, 0.6)),
        bag_side=int(rng.choice([0, -1, 1], p=[0.5, 0.25, 0.25])),
        bag=_colour(rng),
        bag_infrared=float(rng.uniform(0.1, 0.95)),
        bag_size=float(rng.uniform(0.08, 0.14)),
    )


@dataclass(frozen=True)
class _CameraStyle:
    background: np.ndarray  # (3,) base colour
    background_texture: float  # amplitude of the background's blotches
    gain: np.ndarray  # (3,) per-channel gain (a colour cast for visible cameras)
    contrast: float
    blur: int  # box-blur radius in pixels at 128 px height
    noise: float  # noise standard deviation in 0..1 units
    scale: float  # typical person size multiplier (camera distance)


def _camera_style(camera_id: int, modality: Modality) -> _CameraStyle:
    """The look of one camera: a fixed function of camera id and modality."""
    rng = np.random.default_rng([7919, camera_id, int(modality)])
    if modality == Modality.INFRARED:
        return _CameraStyle(
            background=np.full(3, rng.uniform(0.1, 0.45)),
            background_texture=float(rng.uniform(0.03, 0.1)),
            gain=np.full(3, rng.uniform(0.85, 1.2)),
            contrast=float(rng.uniform(0.6, 0.9)),
            blur=int(rng.integers(1, 3)),
            noise=float(rng.uniform(0.03, 0.06)),
            scale=float(rng.uniform(0.94, 1.0)),
        )
    return _CameraStyle(
        background=rng.uniform(0.25, 0.75, 3),
        background_texture=float(rng.uniform(0.04, 0.15)),
        gain=rng.uniform(0.8, 1.15, 3),
        contrast=float(rng.uniform(0.85, 1.1)),
        blur=int(rng.integers(0, 2)),
        noise=float(rng.uniform(0.01, 0.03)),
        scale=float(rng.uniform(0.94, 1.0)),
    )


def _blotches(rng: np.random.Generator, height: int, width: int, cells: tuple[int, int]) -> np.ndarray:
    """(H, W) smooth random field in -1..1: a coarse random grid, upsampled bilinearly."""
    coarse = rng.uniform(-1, 1, (cells[0] + 1, cells[1] + 1))
    rows = np.linspace(0, cells[0], height)
    columns = np.linspace(0, cells[1], width)
    row_low = np.minimum(rows.astype(int), cells[0] - 1)
    column_low = np.minimum(columns.astype(int), cells[1] - 1)
    row_weight = (rows - row_low)[:, None]
    column_weight = (columns - column_low)[None, :]
    top = coarse[row_low][:, column_low] * (1 - column_weight) + coarse[row_low][:, column_low + 1] * column_weight
    bottom = coarse[row_low + 1][:, column_low] * (1 - column_weight) + coarse[row_low + 1][:, column_low + 1] * column_weight
    return top * (1 - row_weight) + bottom * row_weight


def _box_blur(image: np.ndarray, radius: int) -> np.ndarray:
    """(H, W, C) mean over a (2r+1)^2 window, edges replicated."""
    if radius <= 0:
        return image
    size = 2 * radius + 1
    padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    summed = np.cumsum(np.cumsum(padded, axis=0), axis=1)
    summed = np.pad(summed, ((1, 0), (1, 0), (0, 0)))
    return (summed[size:, size:] - summed[:-size, size:] - summed[size:, :-size] + summed[:-size, :-size]) / size**2


def _pattern_mask(garment: Garment, across: np.ndarray, along: np.ndarray) -> np.ndarray:
    """Where the garment shows its second colour; ``across``/``along`` run 0..1 over the garment."""
    kind = PATTERNS[garment.pattern]
    if kind == "horizontal stripes":
        return np.sin(2 * np.pi * (garment.frequency * along + garment.phase)) > 0.2
    if kind == "vertical stripes":
        return np.sin(2 * np.pi * (garment.frequency * across + garment.phase)) > 0.2
    if kind == "checks":
        return (np.sin(2 * np.pi * garment.frequency * across) * np.sin(2 * np.pi * (garment.frequency * along + garment.phase))) > 0
    if kind == "logo":
        centre = 0.3 + 0.4 * garment.phase
        return (np.abs(along - 0.35) < 0.15) & (np.abs(across - centre) < 0.17)
    return np.zeros_like(along, dtype=bool)


def render_person(
    appearance: PersonAppearance, modality: Modality, camera_id: int, rng: np.random.Generator, height: int, width: int
) -> np.ndarray:
    """(height, width, 3) uint8 image of one person seen by one camera."""
    style = _camera_style(camera_id, Modality(modality))
    infrared = Modality(modality) == Modality.INFRARED
    scale = height / 128.0

    background_field = _blotches(rng, height, width, (4, 2))  # (H, W)
    image = np.clip(style.background + style.background_texture * background_field[..., None], 0, 1)  # (H, W, 3)
    if infrared:
        image = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2)

    body_height = appearance.height * style.scale * rng.uniform(0.95, 1.03) * height
    centre_x = width / 2 + rng.normal(0, 0.03) * width
    top = (height - body_height) / 2 + rng.normal(0, 0.015) * height
    mirror = -1.0 if rng.random() < 0.5 else 1.0
    lean = rng.normal(0, 0.02)
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float64)
    v = (rows + 0.5 - top) / body_height  # 0 at the top of the head, 1 at the soles
    u = mirror * ((columns + 0.5 - centre_x) / body_height - lean * (v - 0.5))  # 0 on the body axis

    def paint(mask: np.ndarray, colour: np.ndarray, reflectance: float) -> None:
        if infrared:
            value = _VISIBLE_SHARE_IN_INFRARED * float(colour @ _LUMINANCE) + (1 - _VISIBLE_SHARE_IN_INFRARED) * reflectance
            image[mask] = value
        else:
            image[mask] = colour

    def paint_garment(mask: np.ndarray, garment: Garment, across: np.ndarray, along: np.ndarray) -> None:
        paint(mask, garment.colour, garment.infrared)
        paint(mask & _pattern_mask(garment, across, along), garment.second_colour, garment.second_infrared)

    shoulder, hip = appearance.shoulder_width / 2, appearance.hip_width / 2
    torso_top, torso_bottom = 0.16, 0.16 + appearance.torso_length
    leg_bottom, sole_top = 1.0, 0.955
    # torso: a trapezoid from the shoulders to the hips
    torso_progress = np.clip((v - torso_top) / (torso_bottom - torso_top), 0, 1)
    half_width = shoulder + (hip - shoulder) * torso_progress
    torso = (v >= torso_top) & (v < torso_bottom) & (np.abs(u) < half_width)
    # arms: slanted bands outside the torso
    arm_bottom = torso_top + 0.36
    arm_progress = np.clip((v - torso_top) / (arm_bottom - torso_top), 0, 1)
    arm_inner = shoulder + 0.01 * arm_progress
    arms = (v >= torso_top + 0.01) & (v < arm_bottom) & (np.abs(u) >= arm_inner) & (np.abs(u) < arm_inner + 0.055)
    sleeve_end = arm_bottom - 0.04 if appearance.long_sleeves else torso_top + 0.12
    # legs: two columns with a gap, lower garment down to trouser_length
    legs = (v >= torso_bottom) & (v < sole_top) & (np.abs(u) < hip) & (np.abs(u) > appearance.leg_gap / 2 * (v - torso_bottom) / (1 - torso_bottom) * 4)
    lower_end = torso_bottom + appearance.trouser_length * (sole_top - torso_bottom)
    shoes = (v >= sole_top) & (v < leg_bottom) & (np.abs(u) < hip * 0.95) & (np.abs(u) > appearance.leg_gap)
    head_centre = 0.075
    head = ((u / (appearance.head_radius * 0.85)) ** 2 + ((v - head_centre) / appearance.head_radius) ** 2) < 1
    hair = head & (v < head_centre - appearance.head_radius * 0.25)
    hair |= (np.abs(u) < appearance.head_radius * 0.95) & (v >= head_centre) & (v < head_centre + appearance.hair_length * 0.2) & (np.abs(u) > appearance.head_radius * 0.55)
    neck = (v >= head_centre + appearance.head_radius * 0.8) & (v < torso_top) & (np.abs(u) < appearance.head_radius * 0.45)

    paint(legs & (v >= lower_end), appearance.skin, appearance.skin_infrared)
    paint_garment(legs & (v < lower_end), appearance.lower, (u + hip) / (2 * hip), (v - torso_bottom) / (sole_top - torso_bottom))
    paint(shoes, appearance.shoes, appearance.shoes_infrared)
    paint(arms & (v >= sleeve_end), appearance.skin, appearance.skin_infrared)
    paint_garment(arms & (v < sleeve_end), appearance.upper, (np.abs(u) - arm_inner) / 0.055, (v - torso_top) / (arm_bottom - torso_top))
    paint_garment(torso, appearance.upper, (u + shoulder) / (2 * shoulder), torso_progress)
    paint(neck | head, appearance.skin, appearance.skin_infrared)
    paint(hair, appearance.hair, appearance.hair_infrared)
    if appearance.bag_side:
        side = appearance.bag_side * u
        bag = (side > shoulder - 0.02) & (side < shoulder + appearance.bag_size) & (v > 0.3) & (v < 0.3 + 1.5 * appearance.bag_size)
        strap = (np.abs(u - appearance.bag_side * (v - 0.16) * 0.6) < 0.012) & (v > torso_top) & (v < 0.32)
        paint(bag | (strap & torso), appearance.bag, appearance.bag_infrared)

    # soft shading down the body, then the camera and the moment
    image *= (1.05 - 0.15 * np.clip(v, 0, 1))[..., None]
    illumination = rng.uniform(0.75, 1.25)
    image = (image - 0.5) * style.contrast + 0.5
    image = image * style.gain * illumination
    if rng.random() < 0.1:
        occluder_height = int(rng.uniform(0.15, 0.4) * height)
        occluder_width = int(rng.uniform(0.4, 0.8) * width)
        row = int(rng.integers(height // 3, max(height // 3 + 1, height - occluder_height)))
        column = int(rng.integers(0, max(1, width - occluder_width)))
        tone = style.background * style.gain * rng.uniform(0.6, 1.2)
        image[row : row + occluder_height, column : column + occluder_width] = tone.mean() if infrared else tone
    blur = int(round(style.blur * scale)) + int(rng.random() < 0.2)
    image = _box_blur(image, blur)
    noise = rng.normal(0, style.noise * rng.uniform(0.7, 1.3), (height, width, 1 if infrared else 3))
    image = image + noise
    pixels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    if infrared:
        pixels = np.repeat(pixels[..., :1], 3, axis=2)
    return pixels
