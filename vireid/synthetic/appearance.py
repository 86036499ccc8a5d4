"""Synthetic pedestrians: a stable per-person appearance rendered in either modality.

A person is a body (proportions, stance), garments (colours, infrared
reflectances, patterns, sleeve and trouser length or a skirt), skin, hair, an
optional cap, shoes and an optional bag. The visible rendering uses the
colours; the infrared one is colourless, its intensity for each part only
partly the visible luminance and mostly an independent per-person reflectance,
so shape, proportions, pattern geometry and the bag carry identity across the
modalities while intensities do not. Cameras differ in background, floor line,
gain, colour cast, contrast, vignetting, blur, noise, distance and viewpoint (a
fixed function of camera id and modality); each image adds pose, stride, scale
and crop jitter, illumination, noise and occasionally an occluder.

Everything is drawn with vectorised numpy: a part-label map from boolean masks,
one palette look-up, then whole-image camera operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from vireid.modality import Modality

PATTERNS = ("plain", "horizontal stripes", "vertical stripes", "checks", "logo", "two-tone")
RGB = tuple[float, float, float]

_LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_VISIBLE_SHARE_IN_INFRARED = 0.5  # how much of the visible luminance the infrared intensity keeps
_REFERENCE_HEIGHT = 128.0  # image height at which blur radii are given
_TORSO_TOP = 0.17  # where the shoulders are, as a fraction of the body height from the top of the head
_SOLE_TOP = 0.955  # where the shoes start
_HEAD_CENTRE = 0.08


class _Part(IntEnum):
    """Labels of the part map; each part has one colour and one infrared reflectance."""

    BACKGROUND = 0
    SKIN = 1
    HAIR = 2
    CAP = 3
    UPPER = 4
    UPPER_SECOND = 5
    LOWER = 6
    LOWER_SECOND = 7
    SHOES = 8
    BAG = 9


@dataclass(frozen=True)
class Garment:
    """One piece of clothing: two colours and two infrared reflectances laid out by a pattern."""

    colour: RGB  # in 0..1
    second_colour: RGB  # the pattern's other colour
    infrared: float  # reflectance in 0..1
    second_infrared: float
    pattern: int  # index into PATTERNS
    frequency: float  # pattern cycles over the garment
    phase: float  # 0..1, shifts stripes and places the logo


@dataclass(frozen=True)
class PersonAppearance:
    """Everything that identifies one person. Lengths are fractions of the body height."""

    height: float  # body height as a fraction of the image height (before camera distance and jitter)
    shoulder_width: float
    hip_width: float
    torso_length: float
    arm_width: float
    head_radius: float
    stance: float  # gap between the feet
    skin: RGB
    skin_infrared: float
    hair: RGB
    hair_infrared: float
    hair_length: float  # 0 short .. 1 long (hair down to the shoulders)
    cap: RGB | None  # a cap's colour, or None for no cap
    cap_infrared: float
    upper: Garment
    lower: Garment
    sleeve_length: float  # fraction of the arm covered by the upper garment
    trouser_length: float  # fraction of the leg covered by the lower garment
    skirt: bool  # the lower garment flares over both legs instead of covering each
    shoes: RGB
    shoes_infrared: float
    bag_side: int  # 0 none, -1 left, +1 right (before the per-image mirror)
    bag: RGB
    bag_infrared: float
    bag_size: float
    bag_drop: float  # how far below the shoulders the bag hangs


def _colour(rng: np.random.Generator) -> RGB:
    """A garment colour: saturated or muted hues and greys, as clothes are."""
    if rng.random() < 0.3:
        grey = float(rng.uniform(0.05, 0.95))
        return (grey, grey, grey)
    hue = rng.uniform(0, 6)
    saturation, value = rng.uniform(0.3, 1.0), rng.uniform(0.2, 1.0)
    channel = np.clip(np.abs((hue - np.array([3.0, 1.0, 5.0])) % 6 - 3) - 1, 0, 1)  # hue wheel
    red, green, blue = value * (1 - saturation + saturation * channel)
    return (float(red), float(green), float(blue))


def _garment(rng: np.random.Generator, patterns: tuple[int, ...]) -> Garment:
    return Garment(
        colour=_colour(rng),
        second_colour=_colour(rng),
        infrared=float(rng.uniform(0.05, 0.95)),
        second_infrared=float(rng.uniform(0.05, 0.95)),
        pattern=int(rng.choice(patterns)),
        frequency=float(rng.uniform(2.0, 6.0)),
        phase=float(rng.uniform(0, 1)),
    )


def sample_appearance(rng: np.random.Generator) -> PersonAppearance:
    """Draw one person."""
    skin_tone = rng.uniform(0.3, 0.95)
    hair_tone = rng.uniform(0.05, 0.6)
    shoe_tone = float(rng.uniform(0.02, 0.9))
    has_cap = rng.random() < 0.2
    return PersonAppearance(
        height=float(rng.uniform(0.8, 0.95)),
        shoulder_width=float(rng.uniform(0.2, 0.3)),
        hip_width=float(rng.uniform(0.15, 0.22)),
        torso_length=float(rng.uniform(0.3, 0.4)),
        arm_width=float(rng.uniform(0.045, 0.065)),
        head_radius=float(rng.uniform(0.055, 0.075)),
        stance=float(rng.uniform(0.0, 0.06)),
        skin=(float(skin_tone), float(skin_tone * 0.8), float(skin_tone * 0.65)),
        skin_infrared=float(rng.uniform(0.55, 0.9)),
        hair=(float(hair_tone), float(hair_tone * 0.85), float(hair_tone * 0.7)),
        hair_infrared=float(rng.uniform(0.1, 0.5)),
        hair_length=float(rng.uniform(0, 1)),
        cap=_colour(rng) if has_cap else None,
        cap_infrared=float(rng.uniform(0.1, 0.9)),
        upper=_garment(rng, tuple(range(len(PATTERNS)))),
        lower=_garment(rng, (0, 0, 1, 2, 5)),
        sleeve_length=float(rng.choice([0.3, 1.0], p=[0.4, 0.6])),
        trouser_length=float(rng.choice([0.45, 1.0], p=[0.3, 0.7])),
        skirt=bool(rng.random() < 0.15),
        shoes=(shoe_tone, shoe_tone, shoe_tone),
        shoes_infrared=float(rng.uniform(0.05, 0.6)),
        bag_side=int(rng.choice([0, -1, 1], p=[0.5, 0.25, 0.25])),
        bag=_colour(rng),
        bag_infrared=float(rng.uniform(0.1, 0.95)),
        bag_size=float(rng.uniform(0.08, 0.14)),
        bag_drop=float(rng.uniform(0.1, 0.25)),
    )


@dataclass(frozen=True)
class _CameraStyle:
    background: np.ndarray  # (C,) base tone
    floor: np.ndarray  # (C,) tone below the floor line
    floor_line: float  # where the floor starts, as a fraction of the image height
    texture: float  # amplitude of the background's blotches
    texture_cells: tuple[int, int]  # coarseness of the blotches (rows, columns)
    gain: np.ndarray  # (C,) per-channel gain: a colour cast for visible cameras
    contrast: float
    vignette: float  # how much darker the corners are (an infrared illuminator's cone)
    blur: float  # box-blur radius in pixels at the reference height
    noise: float  # noise standard deviation in 0..1 units
    distance: float  # person-size multiplier
    elevation: float  # > 0: seen from above, heads wider than feet
    vertical_offset: float  # where the person tends to sit, as a fraction of the image height


def _camera_style(camera_id: int, modality: Modality) -> _CameraStyle:
    """The look of one camera: a fixed function of camera id and modality."""
    rng = np.random.default_rng([7919, camera_id, int(modality)])
    if modality == Modality.INFRARED:
        tone = rng.uniform(0.15, 0.45)
        return _CameraStyle(
            background=np.array([tone], dtype=np.float32),
            floor=np.array([tone * rng.uniform(0.7, 1.3)], dtype=np.float32),
            floor_line=float(rng.uniform(0.6, 0.9)),
            texture=float(rng.uniform(0.05, 0.15)),
            texture_cells=(int(rng.integers(2, 6)), int(rng.integers(1, 4))),
            gain=np.full(1, rng.uniform(0.85, 1.2), dtype=np.float32),
            contrast=float(rng.uniform(0.6, 0.85)),
            vignette=float(rng.uniform(0.2, 0.45)),
            blur=float(rng.uniform(0.4, 1.2)),
            noise=float(rng.uniform(0.03, 0.06)),
            distance=float(rng.uniform(0.9, 1.0)),
            elevation=float(rng.uniform(-0.1, 0.4)),
            vertical_offset=float(rng.normal(0, 0.02)),
        )
    background = np.asarray(_colour(rng), dtype=np.float32) * 0.6 + 0.2  # muted: walls, pavement, foliage
    return _CameraStyle(
        background=background,
        floor=np.asarray(_colour(rng), dtype=np.float32) * 0.5 + 0.25,
        floor_line=float(rng.uniform(0.6, 0.9)),
        texture=float(rng.uniform(0.05, 0.2)),
        texture_cells=(int(rng.integers(2, 6)), int(rng.integers(1, 4))),
        gain=rng.uniform(0.8, 1.15, 3).astype(np.float32),
        contrast=float(rng.uniform(0.85, 1.1)),
        vignette=float(rng.uniform(0.0, 0.15)),
        blur=float(rng.uniform(0.0, 1.0)),
        noise=float(rng.uniform(0.01, 0.03)),
        distance=float(rng.uniform(0.9, 1.0)),
        elevation=float(rng.uniform(-0.1, 0.4)),
        vertical_offset=float(rng.normal(0, 0.02)),
    )


def _blotches(rng: np.random.Generator, height: int, width: int, cells: tuple[int, int]) -> np.ndarray:
    """(H, W) smooth random field in -1..1: a coarse random grid, upsampled bilinearly."""
    coarse = rng.uniform(-1, 1, (cells[0] + 1, cells[1] + 1)).astype(np.float32)

    def interpolation(size: int, count: int) -> np.ndarray:  # (size, count + 1) bilinear weights
        position = np.linspace(0, count, size, dtype=np.float32)[:, None]
        return np.maximum(0, 1 - np.abs(position - np.arange(count + 1, dtype=np.float32)))

    return interpolation(height, cells[0]) @ coarse @ interpolation(width, cells[1]).T


def _blur_axis(image: np.ndarray, radius: float, axis: int) -> np.ndarray:
    """Mean over [-r, r] along one axis of a (C, H, W) image, edges replicated; a fractional
    radius gives the two outermost taps a partial weight."""
    whole = int(radius)
    fraction = np.float32(radius - whole)
    reach = whole + 1
    length = image.shape[axis]
    padding = [(0, 0)] * image.ndim
    padding[axis] = (reach, reach)
    padded = np.pad(image, padding, mode="edge")

    def shifted(offset: int) -> np.ndarray:  # the image moved by offset along the axis
        index = [slice(None)] * image.ndim
        index[axis] = slice(reach + offset, reach + offset + length)
        return padded[tuple(index)]

    if fraction > 0:
        summed = shifted(-reach) + shifted(reach)
        summed *= fraction
    else:
        summed = np.zeros_like(shifted(0))
    for offset in range(-whole, whole + 1):
        summed += shifted(offset)
    summed *= 1 / (2 * whole + 1 + 2 * fraction)
    return summed


def _blur(image: np.ndarray, radius: float) -> np.ndarray:
    """(C, H, W) box blur over a (2r+1)^2 window, separable; r may be fractional."""
    if radius <= 0:
        return image
    return _blur_axis(_blur_axis(image, radius, 1), radius, 2)


def _add_sensor_noise(image: np.ndarray, rng: np.random.Generator, deviation: float) -> None:
    """Add zero-mean noise of the given standard deviation to ``image`` in place: the sum of
    two uniform bytes, triangular, near Gaussian and several times cheaper to draw."""
    pair = np.frombuffer(rng.bytes(2 * image.size), dtype=np.uint8).reshape(2, *image.shape)
    noise = np.add(pair[0], pair[1], dtype=np.float32)
    noise -= 255
    noise *= deviation / np.sqrt(2 * (256**2 - 1) / 12)  # a byte's variance is (256^2 - 1) / 12
    image += noise


def _stripes(position: np.ndarray, frequency: float, phase: float) -> np.ndarray:
    """Boolean bands: 40 % of each cycle of ``frequency * position + phase``."""
    cycle = frequency * position + phase
    return cycle - np.floor(cycle) < 0.4


def _pattern_mask(garment: Garment, across: np.ndarray, along: np.ndarray) -> np.ndarray:
    """Where the garment shows its second colour; ``across`` (H, W) and ``along`` (H, 1)
    run 0..1 over the garment."""
    kind = PATTERNS[garment.pattern]
    if kind == "horizontal stripes":
        return _stripes(along, garment.frequency, garment.phase)
    if kind == "vertical stripes":
        return _stripes(across, garment.frequency, garment.phase)
    if kind == "checks":
        return _stripes(across, garment.frequency, 0.0) ^ _stripes(along, garment.frequency, garment.phase)
    if kind == "logo":
        centre = 0.3 + 0.4 * garment.phase
        return (np.abs(along - 0.3) < 0.12) & (np.abs(across - centre) < 0.15)
    if kind == "two-tone":
        return along > 0.35 + 0.3 * garment.phase
    return np.zeros((1, 1), dtype=bool)


@dataclass(frozen=True)
class _Pose:
    """Per-image placement (in pixels) and posture (in body heights) of the person."""

    body_height: float
    top: float
    centre_x: float
    mirror: float  # -1 flips the person left/right
    lean: float
    stride: float  # how far the feet swing apart, as a fraction of the body height
    arm_swing: float  # how far the hands move away from the body


def _sample_pose(
    appearance: PersonAppearance, style: _CameraStyle, rng: np.random.Generator, height: int, width: int
) -> _Pose:
    """Where a detector's crop puts the person (70-96 % of the height, jittered) and how they stand."""
    fraction = np.clip(appearance.height * style.distance * rng.uniform(0.9, 1.05), 0.7, 0.96)
    body_height = float(fraction * height)
    slack = height - body_height
    top = slack * (0.5 + style.vertical_offset) + rng.normal(0, 0.02) * height
    return _Pose(
        body_height=body_height,
        top=float(top),
        centre_x=float(width / 2 + rng.normal(0, 0.04) * width),
        mirror=-1.0 if rng.random() < 0.5 else 1.0,
        lean=float(rng.normal(0, 0.02)),
        stride=float(rng.uniform(0, 0.08)),
        arm_swing=float(rng.uniform(0, 0.05)),
    )


class _Canvas:
    """The part-label map under construction and the body coordinates of every pixel.

    ``u`` is the horizontal body coordinate (0 on the body axis, in body heights,
    mirrored and sheared by the pose, widened by the camera's elevation) and ``v``
    the vertical one (0 at the top of the head, 1 at the soles). Parts are drawn
    one row band at a time, so each mask covers only the rows the part can reach.
    """

    def __init__(self, style: _CameraStyle, pose: _Pose, height: int, width: int) -> None:
        rows = np.arange(height, dtype=np.float32)[:, None]  # (H, 1)
        columns = np.arange(width, dtype=np.float32)[None, :]  # (1, W)
        self.v = (rows + 0.5 - pose.top) / pose.body_height  # (H, 1)
        widening = 1 / (1 + style.elevation * (0.5 - self.v))  # (H, 1): a camera above sees heads wider than feet
        self.u = (columns + 0.5 - pose.centre_x) * (pose.mirror / pose.body_height) * widening  # (H, W)
        self.u -= pose.mirror * pose.lean * (self.v - 0.5)
        self.side = np.abs(self.u)  # (H, W), distance from the body axis
        self.labels = np.zeros((height, width), dtype=np.uint8)  # (H, W) values of _Part

    def band(self, start: float, stop: float) -> tuple[slice, np.ndarray, np.ndarray, np.ndarray]:
        """Rows with start <= v < stop, and their u (h, W), side (h, W) and v (h, 1)."""
        rows = slice(*np.searchsorted(self.v[:, 0], [start, stop]).tolist())
        return rows, self.u[rows], self.side[rows], self.v[rows]

    def draw(self, part: _Part, rows: slice, mask: np.ndarray) -> None:
        np.copyto(self.labels[rows], np.uint8(part), where=mask)


def _draw_legs(canvas: _Canvas, appearance: PersonAppearance, pose: _Pose) -> None:
    """Two legs spreading from the hips by stance and stride, the lower garment, shoes."""
    hip = appearance.hip_width / 2
    torso_bottom = _TORSO_TOP + appearance.torso_length
    leg_length = _SOLE_TOP - torso_bottom

    def on_leg(side: np.ndarray, v: np.ndarray, widening: float = 1.0) -> np.ndarray:
        progress = np.clip((v - torso_bottom) / leg_length, 0, 1)  # (h, 1)
        half_width = 0.42 * hip * (1 - 0.25 * progress) * widening
        centre = 0.5 * hip + (appearance.stance + pose.stride) / 2 * progress
        return np.abs(side - centre) < half_width

    rows, _, side, v = canvas.band(torso_bottom, _SOLE_TOP)
    canvas.draw(_Part.SKIN, rows, on_leg(side, v))
    rows, u, side, v = canvas.band(torso_bottom, torso_bottom + appearance.trouser_length * leg_length)
    if appearance.skirt:
        canvas.draw(_Part.LOWER, rows, side < hip * 1.05 + 0.6 * (v - torso_bottom) * appearance.hip_width)
    else:
        canvas.draw(_Part.LOWER, rows, on_leg(side, v))
    pattern = _pattern_mask(appearance.lower, u / (2 * hip) + 0.5, (v - torso_bottom) / leg_length)
    canvas.draw(_Part.LOWER_SECOND, rows, (canvas.labels[rows] == _Part.LOWER) & pattern)
    rows, _, side, v = canvas.band(_SOLE_TOP, 1.0)
    canvas.draw(_Part.SHOES, rows, on_leg(side, v, widening=1.25))


def _draw_upper_body(canvas: _Canvas, appearance: PersonAppearance, pose: _Pose) -> None:
    """Arms (sleeves, then skin), the torso as a trapezoid from shoulders to hips, its pattern."""
    shoulder, hip = appearance.shoulder_width / 2, appearance.hip_width / 2
    torso_bottom = _TORSO_TOP + appearance.torso_length
    arm_top, arm_bottom = _TORSO_TOP + 0.01, _TORSO_TOP + 0.36
    sleeve_end = _TORSO_TOP + appearance.sleeve_length * (arm_bottom - 0.03 - _TORSO_TOP)
    rows, u, side, v = canvas.band(_TORSO_TOP, max(torso_bottom, arm_bottom))
    arm_progress = np.clip((v - _TORSO_TOP) / (arm_bottom - _TORSO_TOP), 0, 1)  # (h, 1)
    arm_inner = shoulder + (0.005 + pose.arm_swing) * arm_progress  # (h, 1)
    arms = (side >= arm_inner) & (side < arm_inner + appearance.arm_width) & (v >= arm_top) & (v < arm_bottom)
    canvas.draw(_Part.SKIN, rows, arms)
    canvas.draw(_Part.UPPER, rows, arms & (v < sleeve_end))
    torso_progress = np.clip((v - _TORSO_TOP) / appearance.torso_length, 0, 1)  # (h, 1)
    torso = (side < shoulder + (hip - shoulder) * torso_progress) & (v < torso_bottom)
    canvas.draw(_Part.UPPER, rows, torso)
    pattern = _pattern_mask(appearance.upper, u / (2 * shoulder) + 0.5, torso_progress)
    canvas.draw(_Part.UPPER_SECOND, rows, (canvas.labels[rows] == _Part.UPPER) & pattern)


def _draw_bag(canvas: _Canvas, appearance: PersonAppearance) -> None:
    """A bag at one hip, its strap running from the neck across the chest."""
    shoulder = appearance.shoulder_width / 2
    bag_top = _TORSO_TOP + appearance.bag_drop
    rows, u, _, v = canvas.band(_TORSO_TOP, bag_top + 1.3 * appearance.bag_size)
    bag_u = appearance.bag_side * u  # (h, W), positive on the bag's side
    bag = (bag_u > shoulder - 0.03) & (bag_u < shoulder + appearance.bag_size) & (v > bag_top)
    strap = (np.abs(bag_u - (v - _TORSO_TOP) / appearance.bag_drop * shoulder) < 0.012) & (v <= bag_top)
    canvas.draw(_Part.BAG, rows, bag | strap)


def _draw_head(canvas: _Canvas, appearance: PersonAppearance) -> None:
    """Head and neck, hair (short or down to the shoulders), optionally a cap with a brim."""
    radius = appearance.head_radius
    hair_end = _HEAD_CENTRE + appearance.hair_length * 0.2
    rows, u, side, v = canvas.band(_HEAD_CENTRE - radius, max(_TORSO_TOP, hair_end))
    head = (u / (radius * 0.85)) ** 2 + ((v - _HEAD_CENTRE) / radius) ** 2 < 1
    neck = (side < radius * 0.45) & (v >= _HEAD_CENTRE + radius * 0.8) & (v < _TORSO_TOP)
    canvas.draw(_Part.SKIN, rows, head | neck)
    crown = head & (v < _HEAD_CENTRE - radius * 0.25)
    long_hair = (side < radius * 0.95) & (side > radius * 0.55) & (v >= _HEAD_CENTRE) & (v < hair_end)
    canvas.draw(_Part.HAIR, rows, crown | long_hair)
    if appearance.cap is not None:
        brim = (side < radius * 1.15) & (np.abs(v - (_HEAD_CENTRE - radius * 0.45)) < radius * 0.12)
        canvas.draw(_Part.CAP, rows, (head & (v < _HEAD_CENTRE - radius * 0.45)) | brim)


def _palette(appearance: PersonAppearance, infrared: bool) -> np.ndarray:
    """(C, parts) colour (C = 3) or infrared intensity (C = 1) of every part label."""
    upper, lower = appearance.upper, appearance.lower
    entries = {
        _Part.BACKGROUND: ((0.0, 0.0, 0.0), 0.0),
        _Part.SKIN: (appearance.skin, appearance.skin_infrared),
        _Part.HAIR: (appearance.hair, appearance.hair_infrared),
        _Part.CAP: (appearance.cap or (0.0, 0.0, 0.0), appearance.cap_infrared),
        _Part.UPPER: (upper.colour, upper.infrared),
        _Part.UPPER_SECOND: (upper.second_colour, upper.second_infrared),
        _Part.LOWER: (lower.colour, lower.infrared),
        _Part.LOWER_SECOND: (lower.second_colour, lower.second_infrared),
        _Part.SHOES: (appearance.shoes, appearance.shoes_infrared),
        _Part.BAG: (appearance.bag, appearance.bag_infrared),
    }
    colours = np.array([entries[part][0] for part in _Part], dtype=np.float32)  # (parts, 3)
    if not infrared:
        return np.ascontiguousarray(colours.T)
    reflectances = np.array([entries[part][1] for part in _Part], dtype=np.float32)  # (parts,)
    intensity = _VISIBLE_SHARE_IN_INFRARED * (colours @ _LUMINANCE) + (1 - _VISIBLE_SHARE_IN_INFRARED) * reflectances
    return intensity[None, :]


def _background(style: _CameraStyle, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(C, H, W) the scene behind the person: a wall or foliage tone above the floor line, blotched."""
    floor_row = int(np.clip(style.floor_line + rng.normal(0, 0.03), 0, 1) * height)
    tone = np.repeat(style.background[:, None], height, axis=1)  # (C, H)
    tone[:, floor_row:] = style.floor[:, None]
    blotches = 1 + style.texture * _blotches(rng, height, width, style.texture_cells)  # (H, W)
    return tone[:, :, None] * blotches


def _occlude(image: np.ndarray, style: _CameraStyle, rng: np.random.Generator) -> None:
    """Cover up to a quarter of the (C, H, W) image, low down, with a scene-like textured block."""
    height, width = image.shape[1:]
    block_height = max(1, int(rng.uniform(0.15, 0.4) * height))
    block_width = max(1, int(min(rng.uniform(0.4, 1.0), 0.25 * height / block_height) * width))
    row = int(rng.integers(height // 3, max(height // 3 + 1, height - block_height + 1)))
    column = int(rng.integers(0, width - block_width + 1))
    texture = 1 + 0.15 * _blotches(rng, block_height, block_width, (2, 2))  # (h, w)
    tone = style.background * np.float32(rng.uniform(0.5, 1.3))  # (C,)
    image[:, row : row + block_height, column : column + block_width] = tone[:, None, None] * texture


def _apply_camera(image: np.ndarray, style: _CameraStyle, rng: np.random.Generator) -> np.ndarray:
    """(C, H, W) scene radiance to the camera's output in 0..1 (before quantisation)."""
    height, width = image.shape[1:]
    across = np.linspace(-1, 1, width, dtype=np.float32)[None, :]  # (1, W)
    down = np.linspace(-1, 1, height, dtype=np.float32)[:, None]  # (H, 1)
    lighting = np.float32(rng.uniform(0.75, 1.25)) * (1 + np.float32(rng.normal(0, 0.1)) * across)  # (1, W)
    exposure = lighting * (1 - np.float32(style.vignette / 2) * (across**2 + down**2))  # (H, W)
    image -= 0.5
    image *= np.float32(style.contrast)
    image += 0.5
    image *= style.gain[:, None, None]
    image *= exposure
    motion_blur = rng.uniform(0.5, 1.5) if rng.random() < 0.2 else 0.0  # now and then a moving person
    image = _blur(image, (style.blur + motion_blur) * height / _REFERENCE_HEIGHT)
    _add_sensor_noise(image, rng, style.noise * rng.uniform(0.7, 1.3))
    return image


def render_person(
    appearance: PersonAppearance, modality: Modality, camera_id: int, rng: np.random.Generator, height: int, width: int
) -> np.ndarray:
    """(height, width, 3) uint8 image of one person seen by one camera."""
    modality = Modality(modality)
    style = _camera_style(camera_id, modality)
    pose = _sample_pose(appearance, style, rng, height, width)
    canvas = _Canvas(style, pose, height, width)
    _draw_legs(canvas, appearance, pose)
    _draw_upper_body(canvas, appearance, pose)
    if appearance.bag_side:
        _draw_bag(canvas, appearance)
    _draw_head(canvas, appearance)

    shading = (1.05 - 0.15 * np.clip(canvas.v, 0, 1)) * (1 - 1.5 * np.minimum(canvas.u * canvas.u, 0.1))  # (H, W)
    image = _palette(appearance, modality == Modality.INFRARED).take(canvas.labels, axis=1)  # (C, H, W)
    image *= shading
    np.copyto(image, _background(style, rng, height, width), where=canvas.labels == _Part.BACKGROUND)
    if rng.random() < 0.1:
        _occlude(image, style, rng)
    image = _apply_camera(image, style, rng)
    image *= 255
    image += 0.5
    pixels = np.clip(image, 0, 255, out=image).astype(np.uint8)  # (C, H, W)
    return np.ascontiguousarray(np.broadcast_to(pixels.transpose(1, 2, 0), (height, width, 3)))
