"""Procedural faces for verification and recognition: identities and nuisances.

An identity is a fixed set of parameters -- head size and shape (width, jaw
taper), skin tone, eye spacing, height, size, tilt and iris colour, brows, nose,
mouth and lip colour, ears, hair style (six), hairline, volume and colour, and
marks (a mole, a moustache or beard). Every image of an identity redraws the
nuisances verification must ignore: in-plane rotation, shift and scale, a yaw
(the features slide over a sphere-like head and the far side foreshortens),
lighting direction, ambient level, intensity and colour cast, expression (mouth
openness, smile, eye openness, gaze, brow raise), occlusion (glasses, sometimes
dark, and a strand of hair), background (a gradient and a clutter blob) and pixel
noise.

Identity ``k`` under seed ``s`` is a function of ``(s, k)`` alone: its
parameters come from a random stream keyed by both, so ``faces(n, m, seed=s)``
and ``faces(n2, m2, seed=s, first_identity=n)`` show disjoint people, and the
same ``k`` gives the same person in every call (whatever ``n``, ``m`` or
``size``). The nuisances come from a stream keyed by the call's arguments
except ``size``: the same call at another size shows the same images (up to
sampling and pixel noise).

Everything is drawn analytically per pixel (no warps), in float32, chunk by
chunk, with NumPy only; results do not depend on any thread count.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import _validate
from ._common import CHUNK, add_noise, gradient_backgrounds, hsv_to_rgb

__all__ = ["HAIR_STYLES", "FaceData", "faces"]

HAIR_STYLES: tuple[str, ...] = ("bald", "short", "long", "fringe", "parted", "curly")
"""The hair styles an identity can have (its ``hair_style`` parameter indexes this)."""

MIN_SIZE = 24
# Domain tags keep the identity streams and the per-call nuisance stream apart
# from each other and from any other use of the same seed.
_IDENTITY_TAG = 0xFACE1D
_NUISANCE_TAG = 0xFACE2E
_NOISE_TAG = 0xFACE3F

# Labels of the paint map, in no particular order; the palette holds their colours.
(
    _BG,
    _NECK,
    _EAR,
    _SKIN,
    _HAIR,
    _BROW,
    _WHITE,
    _IRIS,
    _PUPIL,
    _NOSE,
    _LIP,
    _INSIDE,
    _MOLE,
    _FRAME,
    _LENS,
    _CLUTTER,
    _CLOTHES,
) = range(17)
_N_LABELS = 17
# Labels that directional light shades (the background and clutter stay flat).
_SHADED = np.zeros(_N_LABELS, dtype=bool)
_SHADED[
    [_NECK, _EAR, _SKIN, _HAIR, _BROW, _WHITE, _IRIS, _PUPIL, _NOSE, _LIP, _INSIDE, _MOLE, _CLOTHES]
] = True

# name: (low, high) of a uniform draw; every identity draws them in this order.
_IDENTITY_RANGES: dict[str, tuple[float, float]] = {
    "head_size": (0.85, 1.1),
    "head_width": (0.68, 0.88),  # half-width / half-height
    "jaw": (0.0, 0.4),  # narrowing of the lower half
    "skin_tone": (0.0, 1.0),
    "skin_hue": (-1.0, 1.0),
    "eye_dx": (0.3, 0.44),  # in head half-widths
    "eye_y": (-0.26, -0.08),
    "eye_w": (0.09, 0.15),
    "eye_h": (0.05, 0.085),
    "eye_tilt": (-0.3, 0.3),
    "iris_r": (0.035, 0.055),
    "iris_hue": (0.0, 1.0),
    "iris_kind": (0.0, 1.0),
    "brow_gap": (0.1, 0.19),
    "brow_half": (0.09, 0.17),
    "brow_thick": (0.018, 0.05),
    "brow_tilt": (-0.3, 0.3),
    "brow_arch": (0.0, 0.07),
    "nose_y": (0.1, 0.26),
    "nose_len": (0.14, 0.3),
    "nose_w": (0.06, 0.13),
    "nose_shade": (0.7, 0.88),
    "mouth_y": (0.44, 0.6),
    "mouth_w": (0.16, 0.32),
    "lip_thick": (0.022, 0.05),
    "lip_red": (0.25, 0.8),
    "ear_size": (0.75, 1.25),
    "hair_style": (0.0, 1.0),
    "hair_hue": (0.0, 1.0),
    "hair_sat": (0.0, 1.0),
    "hair_value": (0.0, 1.0),
    "hair_dyed": (0.0, 1.0),
    "hairline": (-0.55, -0.22),
    "hair_volume": (1.04, 1.22),
    "hair_length": (0.35, 1.0),
    "parting": (-0.5, 0.5),
    "mole": (0.0, 1.0),
    "mole_u": (-0.55, 0.55),
    "mole_v": (-0.1, 0.65),
    "mole_r": (0.022, 0.042),
    "beard": (0.0, 1.0),
}

_NUISANCE_RANGES: dict[str, tuple[float, float]] = {
    "angle": (-0.3, 0.3),  # radians, in-plane
    "shift_x": (-0.09, 0.09),  # image sides
    "shift_y": (-0.08, 0.08),
    "scale": (0.85, 1.15),
    "yaw": (-0.5, 0.5),  # radians
    "light_az": (0.0, 2.0 * np.pi),
    "light_z": (0.45, 0.95),
    "ambient": (0.5, 0.8),
    "intensity": (0.75, 1.3),
    "cast_r": (-0.1, 0.1),
    "cast_g": (-0.1, 0.1),
    "cast_b": (-0.1, 0.1),
    "mouth_open": (-1.0, 1.0),  # <= 0 is closed
    "smile": (-0.05, 0.12),
    "eye_open": (0.0, 1.0),
    "gaze_x": (-0.35, 0.35),
    "gaze_y": (-0.2, 0.2),
    "brow_raise": (0.0, 0.05),
    "glasses": (0.0, 1.0),
    "lens_dark": (0.0, 1.0),
    "frame_hue": (0.0, 1.0),
    "frame_value": (0.05, 0.45),
    "frame_thick": (0.016, 0.032),
    "strand": (0.0, 1.0),
    "strand_u": (-0.45, 0.45),
    "strand_angle": (-0.9, 0.9),
    "strand_width": (0.06, 0.14),
    "clutter": (0.0, 1.0),
    "clutter_x": (0.0, 1.0),
    "clutter_y": (0.0, 1.0),
    "clutter_r": (0.08, 0.3),
    "clutter_hue": (0.0, 1.0),
    "clutter_value": (0.1, 0.9),
    "clothes_hue": (0.0, 1.0),
    "clothes_sat": (0.0, 0.9),
    "clothes_value": (0.1, 0.9),
    "blur": (-0.5, 1.0),  # <= 0 is sharp
}

# Where each nuisance goes as ``nuisance`` falls to 0: a frontal, evenly lit,
# neutral face without occlusion or clutter. Occlusion and clutter draws move
# towards 1, above their rates. Background colours, clothes and noise stay.
_NEUTRAL: dict[str, float] = {
    "angle": 0.0,
    "shift_x": 0.0,
    "shift_y": 0.0,
    "scale": 1.0,
    "yaw": 0.0,
    "light_z": 0.95,
    "ambient": 0.8,
    "intensity": 1.0,
    "cast_r": 0.0,
    "cast_g": 0.0,
    "cast_b": 0.0,
    "mouth_open": -1.0,
    "smile": 0.03,
    "eye_open": 1.0,
    "gaze_x": 0.0,
    "gaze_y": 0.0,
    "brow_raise": 0.0,
    "glasses": 1.0,
    "strand": 1.0,
    "clutter": 1.0,
    "blur": -0.5,
}

GLASSES_RATE = 0.25
DARK_LENS_RATE = 0.3  # of the glasses
STRAND_RATE = 0.2
CLUTTER_RATE = 0.7
MOLE_RATE = 0.5
BEARD_RATE = 0.25
CLOSED_EYES_RATE = 0.12


class FaceData(NamedTuple):
    """The result of :func:`faces`."""

    images: np.ndarray
    """``(N, size, size, 3)`` uint8, channels-last."""
    labels: np.ndarray
    """``(N,)`` int64 identity numbers, ``first_identity .. first_identity + n - 1``."""


def _draw(rng: np.random.Generator, ranges: dict[str, tuple[float, float]], n: int) -> dict:
    u = rng.random((n, len(ranges)))
    return {k: lo + (hi - lo) * u[:, i] for i, (k, (lo, hi)) in enumerate(ranges.items())}


def _identity_parameters(base: int, first: int, n: int) -> dict[str, np.ndarray]:
    rows = [
        np.random.default_rng([_IDENTITY_TAG, base, first + k]).random(len(_IDENTITY_RANGES))
        for k in range(n)
    ]
    u = np.array(rows).reshape(n, len(_IDENTITY_RANGES))
    return {k: lo + (hi - lo) * u[:, i] for i, (k, (lo, hi)) in enumerate(_IDENTITY_RANGES.items())}


def _identity_colours(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Skin, hair, iris and lip colours (n, 3) from the identity's uniform draws."""
    t = p["skin_tone"][:, None]
    dark = np.array([0.36, 0.23, 0.16])
    light = np.array([0.97, 0.82, 0.7])
    skin = dark + t * (light - dark)
    skin = skin * (1.0 + 0.06 * p["skin_hue"][:, None] * np.array([1.0, -0.3, -1.0]))
    # Natural hair: hue in brown-yellow, value spread from black to blond, grey when
    # unsaturated; one in ten is dyed any hue.
    dyed = p["hair_dyed"] < 0.1
    hue = np.where(dyed, p["hair_hue"], 0.03 + 0.1 * p["hair_hue"])
    sat = np.where(dyed, 0.6 + 0.4 * p["hair_sat"], 0.05 + 0.75 * p["hair_sat"])
    val = 0.08 + 0.82 * p["hair_value"] ** 1.5
    hair = hsv_to_rgb(hue, sat, val)
    kind = p["iris_kind"]  # brown, blue-grey or green
    iris_hue = np.where(kind < 0.55, 0.06, np.where(kind < 0.8, 0.55, 0.3))
    iris_hue = iris_hue + 0.05 * (p["iris_hue"] - 0.5)
    iris = hsv_to_rgb(iris_hue, np.full_like(kind, 0.6), 0.2 + 0.35 * p["iris_hue"])
    red = np.array([0.72, 0.2, 0.26])
    lip = (1 - p["lip_red"][:, None]) * skin * 0.8 + p["lip_red"][:, None] * red
    return {"skin": skin, "hair": hair, "iris": iris, "lip": lip}


def faces(
    n_identities: int,
    images_per_identity: int,
    *,
    size: int = 64,
    seed: int | np.random.Generator = 0,
    first_identity: int = 0,
    nuisance: float = 1.0,
) -> FaceData:
    """Procedural face images of ``n_identities`` people, ``images_per_identity`` each.

    Identity ``k`` (``first_identity <= k < first_identity + n_identities``) is
    the same person in every call with the same integer ``seed``; use
    ``first_identity`` to take disjoint sets of people, e.g. training
    ``faces(500, 20, seed=0)`` and testing ``faces(200, 10, seed=0,
    first_identity=500)``. See the module docstring for what identifies a
    person and what varies between their images.

    Parameters
    ----------
    n_identities : int
        Number of people (>= 0).
    images_per_identity : int
        Images of each (>= 1).
    size : int
        Image side in pixels (>= 24). A person looks the same at every size.
    seed : int or numpy.random.Generator
        The same int gives the same data. A generator is consumed to draw an
        int seed, so identity numbers are only comparable within one call.
    first_identity : int
        The number of the first person (>= 0).
    nuisance : float in [0, 1]
        How far the nuisances range: 1 is the full data set, 0 a frontal,
        evenly lit, neutral face without glasses, strands, clutter or blur
        (background colours, clothes and noise still vary). Values between
        scale every range towards that (for curricula and quick tests).

    Returns
    -------
    FaceData
        ``images`` ``(n_identities * images_per_identity, size, size, 3)``
        uint8, grouped by person (image ``i`` shows ``labels[i]``), and
        ``labels`` int64 identity numbers.

    Examples
    --------
    >>> x, y = faces(3, 2, size=32, seed=0)
    >>> x.shape, x.dtype, y.tolist()
    ((6, 32, 32, 3), dtype('uint8'), [0, 0, 1, 1, 2, 2])
    """
    fn = "faces()"
    n_id = _validate.integer(fn, "n_identities", n_identities, minimum=0)
    per = _validate.integer(fn, "images_per_identity", images_per_identity, minimum=1)
    side = _validate.integer(fn, "size", size, minimum=MIN_SIZE)
    first = _validate.integer(fn, "first_identity", first_identity, minimum=0)
    amount = _validate.probability(fn, "nuisance", nuisance)
    if isinstance(seed, np.random.Generator):
        base = int(seed.integers(0, 2**63))
    else:
        base = _validate.seed(fn, "seed", seed)

    ident = _identity_parameters(base, first, n_id)
    colours = _identity_colours(ident)
    n = n_id * per
    owner = np.repeat(np.arange(n_id), per)
    # Nuisances and backgrounds do not depend on the size (only the pixel noise
    # does), so one call at two sizes shows the same scenes.
    rng = np.random.default_rng([_NUISANCE_TAG, base, first, n_id, per])
    noise_rng = np.random.default_rng([_NOISE_TAG, base, first, n_id, per, side])
    nuis = _draw(rng, _NUISANCE_RANGES, n)
    for name, neutral in _NEUTRAL.items():
        nuis[name] = neutral + amount * (nuis[name] - neutral)
    images = np.empty((n, side, side, 3), dtype=np.uint8)
    for start in range(0, n, CHUNK):
        sl = slice(start, min(start + CHUNK, n))
        idx = owner[sl]
        p = {k: v[idx] for k, v in ident.items()}
        p.update({k: v[sl] for k, v in nuis.items()})
        c = {k: v[idx] for k, v in colours.items()}
        chunk = _render(rng, side, p, c)
        add_noise(noise_rng, chunk)
        np.multiply(chunk, 255.0, out=chunk)
        chunk += 0.5
        images[sl] = chunk.astype(np.uint8)
    labels = (first + owner).astype(np.int64)
    return FaceData(images, labels)


def _soften(images: np.ndarray, amount: np.ndarray) -> None:
    """Blend each image with its [1, 2, 1]/4 blur (separable), by ``amount`` in [0, 1], in place.

    An out-of-focus nuisance, and it takes the hard edges off the drawing.
    """
    which = np.flatnonzero(amount > 0)
    if which.size == 0:
        return
    x = images[which]
    cols = x.copy()
    cols[:, 1:-1] += x[:, :-2]
    cols[:, 1:-1] += x[:, 1:-1]
    cols[:, 1:-1] += x[:, 2:]
    cols[:, 1:-1] *= 0.25  # the edge rows stay as they were (weight 1)
    rows = cols.copy()
    rows[:, :, 1:-1] += cols[:, :, :-2]
    rows[:, :, 1:-1] += cols[:, :, 1:-1]
    rows[:, :, 1:-1] += cols[:, :, 2:]
    rows[:, :, 1:-1] *= 0.25
    rows -= x
    rows *= amount[which, None, None, None]
    x += rows
    images[which] = x


def _features(q: Any, f: np.ndarray, v: np.ndarray, a: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Labels of the pixels inside the head: skin, then the marks, nose, mouth,
    facial hair, eyes and brows painted over it.

    ``f``, ``v`` are the pixels' surface coordinates, ``a`` the head's half-width
    and ``ys`` the sine of the yaw, per pixel; ``q(name)`` gives a parameter per pixel.
    """
    label = np.full(f.shape, _SKIN, dtype=np.uint8)
    # Marks on the skin.
    mole = (f - q("mole_u") * a) ** 2 + (v - q("mole_v")) ** 2 <= q("mole_r") ** 2
    mole &= q("mole") < MOLE_RATE
    label[mole] = _MOLE

    # Nose: a triangle pointing up from its tip, shifted further by the yaw
    # (it stands out of the face).
    nf = f - 0.12 * ys
    rise = q("nose_y") - v
    nose = (rise >= 0) & (rise <= q("nose_len"))
    nose &= np.abs(nf) <= q("nose_w") * (1.0 - rise / q("nose_len"))
    label[nose] = _NOSE

    # Mouth: an arc of lips whose middle bends down with the smile, opening
    # into a dark inside.
    mw = q("mouth_w") * a
    across = (f / mw) ** 2
    arc = q("mouth_y") + q("smile") * (1.0 - across)
    opening = 0.09 * np.maximum(q("mouth_open"), 0.0) * (1.0 - across)
    lips = (across <= 1.0) & (np.abs(v - arc) <= q("lip_thick") + opening)
    label[lips] = _LIP
    inside = lips & (np.abs(v - arc) <= opening)
    label[inside] = _INSIDE

    # Facial hair: a moustache for half of the bearded, a full beard for the rest.
    beard_kind = q("beard") / BEARD_RATE
    moustache = (
        (across <= 1.3)
        & (v > q("nose_y") + 0.02)
        & (v < arc - q("lip_thick") - opening)
        & (beard_kind < 0.5)
    )
    full = (v > q("mouth_y") - 0.1) & ~lips & ((beard_kind >= 0.5) & (beard_kind < 1.0))
    beard = (moustache | full) & ~nose
    label[beard] = _HAIR

    # Eyes: whites whose height follows the eye's openness, an iris clipped to
    # them, a pupil; then brows.
    eyes_closed = q("eye_open") < CLOSED_EYES_RATE
    openness = np.where(eyes_closed, 0.12, 0.55 + 0.45 * q("eye_open")).astype(np.float32)
    eye_dx = q("eye_dx") * a
    ew, eh = q("eye_w"), q("eye_h") * openness
    for side_sign in (1.0, -1.0):
        ex = f - side_sign * eye_dx
        ey = v - q("eye_y")
        # Tilt: the outer corners rise with a positive tilt.
        tilt = side_sign * q("eye_tilt")
        ey_t = ey + tilt * ex
        white = (ex / ew) ** 2 + (ey_t / eh) ** 2 <= 1.0
        gx = ex - q("gaze_x") * ew
        gy = ey - q("gaze_y") * q("eye_h")
        iris_d = gx * gx + gy * gy
        iris = white & (iris_d <= q("iris_r") ** 2)
        pupil = white & (iris_d <= (0.45 * q("iris_r")) ** 2)
        label[white] = _WHITE
        label[iris] = _IRIS
        label[pupil] = _PUPIL
        by = v - (q("eye_y") - q("brow_gap") - q("brow_raise"))
        bx = ex / q("brow_half")
        by = by - side_sign * q("brow_tilt") * ex + q("brow_arch") * (1.0 - bx * bx)
        brow = (np.abs(bx) <= 1.0) & (np.abs(by) <= q("brow_thick"))
        label[brow] = _BROW

    return label


def _render(
    rng: np.random.Generator, side: int, p: dict[str, np.ndarray], c: dict[str, np.ndarray]
) -> np.ndarray:
    """Float32 images (m, side, side, 3) in [0, 1] of the chunk's faces."""
    m = len(p["angle"])

    def q(name: str) -> np.ndarray:
        return p[name].astype(np.float32)[:, None, None]

    # Face frame: u to the image's right, v down, in head half-heights, centred on the head.
    radius = 0.32 * side * p["head_size"] * p["scale"]
    cx = side * (0.5 + p["shift_x"])
    cy = side * (0.47 + p["shift_y"])
    pix = np.arange(side, dtype=np.float64) + 0.5
    dx = (pix[None, None, :] - cx[:, None, None]) / radius[:, None, None]
    dy = (pix[None, :, None] - cy[:, None, None]) / radius[:, None, None]
    cos, sin = np.cos(p["angle"])[:, None, None], np.sin(p["angle"])[:, None, None]
    # A yaw also narrows the silhouette a little (the head is deeper than wide).
    squash = (1.0 - 0.12 * np.abs(np.sin(p["yaw"])))[:, None, None]
    u = ((cos * dx + sin * dy) / squash).astype(np.float32)
    v = (-sin * dx + cos * dy).astype(np.float32)

    a = q("head_width")
    # The jaw narrows the head below its middle.
    half_w = a * (1.0 - q("jaw") * np.maximum(v, 0.0) ** 2)
    # Far below the chin (v > 1.5) the taper crosses 0: keep it off exactly 0, where
    # u / 0 would put NaN into the neck's shading. Those pixels lie outside the head
    # either way and their shading only uses the sign of s.
    half_w = np.where(np.abs(half_w) < 1e-6, np.copysign(np.float32(1e-6), half_w), half_w)
    s = u / half_w
    r2 = s * s + v * v
    head = r2 <= 1.0
    depth = np.sqrt(np.maximum(1.0 - r2, 0.0))
    # Features live on the surface of a sphere in (s, v): turning it by the yaw
    # slides them sideways and foreshortens the far side.
    yc = np.cos(p["yaw"]).astype(np.float32)[:, None, None]
    ys = np.sin(p["yaw"]).astype(np.float32)[:, None, None]
    f = (s * yc - depth * ys) * a  # surface u, in head half-heights
    f = np.where(head, f, u)

    label = np.zeros((m, side, side), dtype=np.uint8)

    # Clutter behind everything: one coloured disc somewhere in the image.
    pix32 = pix.astype(np.float32)
    ccx = q("clutter_x") * side
    ccy = q("clutter_y") * side
    cr = q("clutter_r") * side
    blob = (pix32[None, None, :] - ccx) ** 2 + (pix32[None, :, None] - ccy) ** 2 <= cr * cr
    blob &= q("clutter") < CLUTTER_RATE
    label[blob] = _CLUTTER

    # Hair behind the head (long styles and volume), then neck, ears, head.
    style = np.minimum((p["hair_style"] * len(HAIR_STYLES)).astype(np.int64), 5)[:, None, None]
    vol = q("hair_volume")
    hairline = q("hairline") + np.where(style == 3, 0.18, 0.0).astype(np.float32)
    hairline = hairline + np.where(style == 4, q("parting") * f, 0.0).astype(np.float32)
    outline = (u / (a * vol)) ** 2 + ((v + 0.06) / vol) ** 2 <= 1.0
    cap = outline & (v < 0.05)
    long_sides = (np.abs(u) <= a * vol * 1.05) & (v < q("hair_length")) & (v > -0.2)
    curly = (u / (a * 1.35)) ** 2 + ((v + 0.3) / 1.05) ** 2 <= 1.0
    back = np.where(
        style == 0,
        False,
        np.where(style == 2, cap | long_sides, np.where(style == 5, curly, cap)),
    )
    label[back] = _HAIR

    shoulders = v > 1.22 + 0.3 * u * u
    label[shoulders] = _CLOTHES
    neck = (np.abs(u) <= 0.5 * a) & (v > 0.5) & (v < 1.3 + 0.25 * (1.0 - (u / (0.5 * a)) ** 2))
    label[neck] = _NECK
    ear_u = a * 0.98
    er = q("ear_size")
    ears = ((np.abs(u) - ear_u) / (0.11 * er)) ** 2 + ((v - 0.05) / (0.2 * er)) ** 2 <= 1.0
    label[ears & ~back] = _EAR
    label[head] = _SKIN

    # The face's features lie inside the head: drawn on the head's pixels alone
    # (about a quarter of the image), with every parameter gathered per pixel.
    where = np.nonzero(head)
    owner = where[0]

    def per_pixel(name: str) -> np.ndarray:
        return p[name].astype(np.float32)[owner]

    label[where] = _features(per_pixel, f[where], v[where], a[:, 0, 0][owner], ys[:, 0, 0][owner])
    eye_dx = q("eye_dx") * a

    # Hair over the forehead, and a loose strand across the face for some images.
    front = head & (v < hairline) & (style != 0)
    curls = (style == 5) & head & (v < hairline + 0.08)
    label[front | curls] = _HAIR
    sa = q("strand_angle")
    dist = np.abs((f - q("strand_u")) * np.cos(sa) - (v + 0.6) * np.sin(sa))
    strand = (dist <= q("strand_width")) & (v < 0.15) & (v > -1.0) & (q("strand") < STRAND_RATE)
    strand &= (head | outline) & (style != 0)
    label[strand] = _HAIR

    # Glasses: a rim around each eye joined by a bridge; some lenses are dark.
    has_glasses = q("glasses") < GLASSES_RATE
    rim_w, rim_h, thick = 0.17, 0.12, q("frame_thick")
    lens_any = np.zeros_like(head)
    frame = np.zeros_like(head)
    for side_sign in (1.0, -1.0):
        lx = (f - side_sign * eye_dx) / rim_w
        ly = (v - q("eye_y")) / rim_h
        rr = np.sqrt(lx * lx + ly * ly)
        lens_any |= rr <= 1.0
        frame |= np.abs(rr - 1.0) <= thick / rim_h
    bridge = (np.abs(f) <= eye_dx - rim_w) & (np.abs(v - q("eye_y") + 0.03) <= thick)
    dark = has_glasses & (q("lens_dark") < DARK_LENS_RATE)
    label[lens_any & dark & head] = _LENS
    label[(frame | bridge) & has_glasses & (head | (np.abs(u) < a * 1.05))] = _FRAME

    # Shading: a sphere's normal in (s, v, depth), lit from a random direction.
    az = p["light_az"]
    lz = p["light_z"]
    lxy = np.sqrt(1.0 - lz * lz)
    lx_, ly_ = (lxy * np.cos(az)).astype(np.float32), (lxy * np.sin(az)).astype(np.float32)
    norm = np.maximum(np.sqrt(r2), 1.0)
    lambert = (s * lx_[:, None, None] + v * ly_[:, None, None]) / norm + depth * lz.astype(
        np.float32
    )[:, None, None]
    amb = q("ambient")
    shade = amb + (1.0 - amb) * np.maximum(lambert, 0.0)
    shade = np.where(_SHADED[label], shade, np.float32(1.0))

    palette = np.zeros((m, _N_LABELS, 3), dtype=np.float32)
    skin = c["skin"]
    palette[:, _NECK] = 0.85 * skin
    palette[:, _EAR] = 0.93 * skin
    palette[:, _SKIN] = skin
    palette[:, _HAIR] = c["hair"]
    palette[:, _BROW] = 0.75 * c["hair"] + 0.05
    palette[:, _WHITE] = (0.93, 0.92, 0.88)
    palette[:, _IRIS] = c["iris"]
    palette[:, _PUPIL] = (0.04, 0.03, 0.03)
    palette[:, _NOSE] = p["nose_shade"][:, None] * skin
    palette[:, _LIP] = c["lip"]
    palette[:, _INSIDE] = (0.25, 0.06, 0.08)
    palette[:, _MOLE] = 0.45 * skin
    frame_rgb = hsv_to_rgb(p["frame_hue"], np.full(m, 0.5), p["frame_value"])
    palette[:, _FRAME] = frame_rgb
    palette[:, _LENS] = 0.3 * frame_rgb + 0.02
    palette[:, _CLUTTER] = hsv_to_rgb(p["clutter_hue"], np.full(m, 0.6), p["clutter_value"])
    palette[:, _CLOTHES] = hsv_to_rgb(p["clothes_hue"], p["clothes_sat"], p["clothes_value"])

    out = np.empty((m, side, side, 3), dtype=np.float32)
    gradient_backgrounds(rng, out, (0.15, 0.85))
    # One flat gather (the label plus the image's palette offset) is several times
    # faster than indexing the palette with two index arrays.
    flat = label.astype(np.intp)
    flat += (np.arange(m) * _N_LABELS)[:, None, None]
    colour = np.take(palette.reshape(-1, 3), flat, axis=0)
    colour *= shade[..., None]
    np.copyto(out, colour, where=(label != _BG)[..., None])
    _soften(out, np.maximum(p["blur"], 0.0).astype(np.float32))
    cast = np.stack([p["cast_r"], p["cast_g"], p["cast_b"]], -1)
    gain = (p["intensity"][:, None] * (1.0 + cast)).astype(np.float32)
    out *= gain[:, None, None, :]
    np.clip(out, 0.0, 1.0, out=out)
    return out
