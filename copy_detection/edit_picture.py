"""The edit picture: what a copy changed, drawn so a person sees it at a glance.

A newsroom that finds the original of a re-shared picture asks next: what did the copy change? The
numbers of a match (inliers, an affine transform) do not answer that; a picture does. Three panels of
the same height, side by side, with one line of facts under them:

1. the ORIGINAL, the part the copy shows outlined and the part cropped away dimmed and hatched;
2. the COPY, as it is;
3. WHAT CHANGED: the original warped into the copy's frame and blended with it, pale, and tinted where
   the copy differs -- blue where the copy shows something the original does not cover at all (a
   caption bar, letterbox bars, the corners of a rotation), magenta where its brightness pattern
   differs (a logo, text, something painted out), orange where only the colour differs (grayscale,
   a hue or saturation change).

The comparison tolerates what every copy suffers and nobody calls an edit: both pictures are blurred,
and a copy pixel counts as different only when it lies outside the range of the original's pixels
within a few pixels of it (JPEG noise, the transform's small misfit, the thumbnails' resampling);
and the copy's brightness and contrast are matched to the original's first, so a brighter copy does
not read as "everything changed". Luminance and colour are compared apart, so a grayscale copy reads
as "recoloured" and not as "changed".

Inputs are the thumbnails that fingerprints store (longest side ~192 px) and the transform that
verification fits in FULL-SIZE pixel coordinates (corner-based: the copy's corner (w, h) is the
point (w, h)); this module scales it to the thumbnails. It needs numpy, OpenCV and Pillow only, so
both services can draw the picture.
"""

from __future__ import annotations

import dataclasses
import io
import math

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

PANEL_HEIGHT = 256  # pixels; each picture is fitted into PANEL_HEIGHT x MAX_PANEL_WIDTH
MAX_PANEL_WIDTH = 384
MARGIN = 12  # around the figure and between panels
TITLE_HEIGHT = 22  # the panel titles above
LEGEND_HEIGHT = 48  # two lines of facts below
FONT_SIZE = 14

ADDED = (30, 100, 255)  # blue
CHANGED = (230, 20, 140)  # magenta
RECOLOURED = (255, 150, 0)  # orange
OUTLINE = (255, 215, 0)  # yellow: the copy's part of the original
TINT_OPACITY = 0.55

BLUR_SIGMA = 1.5  # panel pixels: JPEG blocks and resampling are finer than this
SLACK = 2  # panel pixels either way the transform may be off without anything reading as changed
LUMINANCE_TOLERANCE = 28.0  # of 255 (OpenCV's 8-bit Lab L), after matching brightness and contrast
CHROMA_TOLERANCE = 14.0  # Lab a*b* distance, 8-bit units; grey to a pale skin tone is ~20
MIN_REGION = 0.002  # of the copy's area: smaller differing specks are noise, not edits
COVERED_INSET = 3  # panel pixels: the warped original's edges blend with the void, so compare inside
BAR_TOLERANCE = 14.0  # Lab distance to the edge's colour within which a pixel belongs to a flat bar
BAR_FLAT_SHARE = 0.6  # of a row in the bar's colour, for a row to count as flat
BAR_DIFFERING_SHARE = 0.3  # of a row differing from the original (a white bar over white sky is no edit)
MIN_BAR_DEPTH = 3  # panel pixels
BAR_EDGE = SLACK + 3  # panel pixels past a bar's last flat row that blur into it
MAX_BAR_SHARE = 0.45  # of the copy's side: deeper than that is the picture, not a bar


@dataclasses.dataclass(frozen=True)
class EditSummary:
    """What a copy did to its original, in numbers (the edit picture's legend; the services' answer)."""

    cropped_to: float  # share of the original's area that the copy shows, 0..1 (1: nothing cropped away)
    mirrored: bool  # the copy is the original's left-right mirror image
    rotation_degrees: float  # how far the copy is turned, anticlockwise on screen positive
    scale: float  # copy pixels per original pixel (0.5: the copy is half the original's resolution)
    added_fraction: float  # share of the copy's area that the original does not cover (bars, borders)
    changed_fraction: float  # share of the copy's area whose brightness differs (logos, text, retouching)
    recoloured_fraction: float  # share of the copy's area where only the colour differs (grayscale, hue)

    def describe(self) -> list[str]:
        """The geometric facts worth saying, in words; the area shares are left to the caller's legend."""
        whole = self.cropped_to >= 0.98
        facts = ["shows the whole original" if whole else f"shows {self.cropped_to:.0%} of the original"]
        if self.mirrored:
            facts.append("mirrored")
        if abs(self.rotation_degrees) >= 1:
            way = "anticlockwise" if self.rotation_degrees > 0 else "clockwise"
            facts.append(f"rotated {abs(self.rotation_degrees):.0f}° {way}")
        if abs(self.scale - 1) >= 0.02:
            facts.append(f"scaled to {self.scale:.0%}")
        return facts


@dataclasses.dataclass(frozen=True)
class _Comparison:
    summary: EditSummary
    copy: np.ndarray  # (h, w, 3) uint8, the copy at panel size
    warped: np.ndarray  # (h, w, 3) uint8, the original warped into the copy's panel frame
    covered: np.ndarray  # (h, w) bool, where the warped original lies
    added: np.ndarray  # (h, w) bool, not covered, or a bar laid over the original
    changed: np.ndarray  # (h, w) bool
    recoloured: np.ndarray  # (h, w) bool
    original: np.ndarray  # (H, W, 3) uint8, the original at panel size
    region: np.ndarray  # (k, 2) float32, the part of the original the copy shows, original panel coordinates


def summarise(query: Image.Image, original: Image.Image, query_size: tuple[int, int], original_size: tuple[int, int],
              query_to_original: np.ndarray) -> EditSummary:
    """The numbers behind the edit picture (same arguments as `edit_picture`)."""
    return _compare(query, original, query_size, original_size, query_to_original).summary


def edit_picture(query: Image.Image, original: Image.Image, query_size: tuple[int, int], original_size: tuple[int, int],
                 query_to_original: np.ndarray) -> Image.Image:
    """The three panels and the legend (RGB). `query`, `original`: thumbnails of pictures whose full sizes
    are `query_size`, `original_size` (w, h); `query_to_original`: (2, 3) affine map of full-size pixels."""
    return _figure(_compare(query, original, query_size, original_size, query_to_original))


def _figure(comparison: _Comparison) -> Image.Image:
    panels = [
        ("original: the copy's part outlined", _original_panel(comparison)),
        ("copy", comparison.copy),
        ("what the copy changed", _difference_panel(comparison)),
    ]
    width = MARGIN + sum(panel.shape[1] + MARGIN for _, panel in panels)
    figure = Image.new("RGB", (width, TITLE_HEIGHT + PANEL_HEIGHT + LEGEND_HEIGHT + MARGIN), (255, 255, 255))
    draw = ImageDraw.Draw(figure)
    font = ImageFont.load_default(size=FONT_SIZE)
    x = MARGIN
    for title, panel in panels:
        top = TITLE_HEIGHT + (PANEL_HEIGHT - panel.shape[0]) // 2  # a panel fitted by width sits in the middle
        figure.paste(Image.fromarray(panel), (x, top))
        draw.text((x, TITLE_HEIGHT - 4), title, fill=(0, 0, 0), font=font, anchor="ls")
        x += panel.shape[1] + MARGIN
    _legend(draw, comparison.summary, font, TITLE_HEIGHT + PANEL_HEIGHT + 8)
    return figure


def edit_picture_png(query: Image.Image, original: Image.Image, query_size: tuple[int, int],
                     original_size: tuple[int, int], query_to_original: np.ndarray) -> bytes:
    """`edit_picture` encoded as PNG, for an API answer."""
    return summary_and_png(query, original, query_size, original_size, query_to_original)[1]


def summary_and_png(query: Image.Image, original: Image.Image, query_size: tuple[int, int],
                    original_size: tuple[int, int], query_to_original: np.ndarray) -> tuple[EditSummary, bytes]:
    """`summarise` and `edit_picture_png` from one comparison (same arguments), for an answer that has both."""
    comparison = _compare(query, original, query_size, original_size, query_to_original)
    buffer = io.BytesIO()
    _figure(comparison).save(buffer, format="PNG", optimize=True)
    return comparison.summary, buffer.getvalue()


def _compare(query: Image.Image, original: Image.Image, query_size: tuple[int, int], original_size: tuple[int, int],
             query_to_original: np.ndarray) -> _Comparison:
    to_original = np.vstack([np.asarray(query_to_original, np.float64).reshape(2, 3), [0, 0, 1]])
    assert abs(np.linalg.det(to_original)) > 1e-9, "query_to_original must be invertible"
    copy = _panel_pixels(query)
    original_pixels = _panel_pixels(original)
    (height, width), (original_height, original_width) = copy.shape[:2], original_pixels.shape[:2]

    # Copy panel pixel index -> original panel pixel index. OpenCV puts pixel centres on integers,
    # the transform puts pixel corners there, hence the half-pixel shifts around the scalings.
    centre = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    panel_to_full = np.diag([query_size[0] / width, query_size[1] / height, 1])
    full_to_panel = np.diag([original_width / original_size[0], original_height / original_size[1], 1])
    index_map = (np.linalg.inv(centre) @ full_to_panel @ to_original @ panel_to_full @ centre)[:2]
    warp = dict(dsize=(width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
    warped = cv2.warpAffine(original_pixels, index_map, **warp)
    covered = cv2.warpAffine(np.full((original_height, original_width), 255, np.uint8), index_map, **warp) >= 128
    inside = cv2.erode(covered.astype(np.uint8), np.ones((2 * COVERED_INSET + 1,) * 2, np.uint8)) > 0

    copy_lab, original_lab = (cv2.GaussianBlur(cv2.cvtColor(p, cv2.COLOR_RGB2LAB).astype(np.float32), (0, 0), BLUR_SIGMA)
                              for p in (copy, warped))
    luminance, chroma = _differences(copy_lab, original_lab, inside)
    # Luminance only: a recoloured sky is flat and differs in colour, yet it is no bar.
    bars, insets = _bars(copy_lab, luminance > LUMINANCE_TOLERANCE, covered)
    compared = inside & ~bars
    if bars.any():  # the bars' flat colour dragged the tone match: match again without them
        luminance, chroma = _differences(copy_lab, original_lab, compared)
    # A logo's letters or a badge over a dark patch differ only in part: close wider gaps, to show it whole.
    changed = _regions((luminance > LUMINANCE_TOLERANCE) & compared, gap=11) & compared
    # The rim of a logo or of retouching differs in colour too: it belongs to the change, not to a recolouring.
    near_change = cv2.dilate(changed.astype(np.uint8), np.ones((2 * SLACK + 3,) * 2, np.uint8)) > 0
    recoloured = _regions((chroma > CHROMA_TOLERANCE) & compared & ~near_change)
    added = ~covered | bars

    # The part of the copy's frame that shows the original: the frame less the bars, in full-size pixels.
    top, bottom, left, right = insets
    sx, sy = query_size[0] / width, query_size[1] / height
    shown = (left * sx, top * sy, query_size[0] - right * sx, query_size[1] - bottom * sy)
    region = _shown_region(to_original, shown, original_size)
    summary = EditSummary(
        cropped_to=float(cv2.contourArea(region) / (original_size[0] * original_size[1])) if len(region) else 0.0,
        **_geometry(to_original),
        added_fraction=float(added.mean()),
        changed_fraction=float(changed.mean()),
        recoloured_fraction=float(recoloured.mean()),
    )
    region_in_panel = region * np.float32([original_width / original_size[0], original_height / original_size[1]])
    return _Comparison(summary, copy, warped, covered, added, changed, recoloured, original_pixels, region_in_panel)


def _panel_pixels(picture: Image.Image) -> np.ndarray:
    scale = min(PANEL_HEIGHT / picture.height, MAX_PANEL_WIDTH / picture.width)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return np.asarray(picture.convert("RGB").resize(size, Image.Resampling.BICUBIC))


def _matched_tone(original: np.ndarray, copy: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The original's luminance with the copy's brightness and contrast. Matched percentiles rather than
    a least-squares fit, and fitted again without the pixels the first fit leaves far off, so that a
    logo or retouching does not drag the match."""
    for _ in range(2):
        low_o, high_o = np.percentile(original[where], [5, 95])
        low_c, high_c = np.percentile(copy[where], [5, 95])
        gain = float(np.clip((high_c - low_c) / max(high_o - low_o, 1.0), 0.5, 2.0))
        matched = (original - low_o) * gain + low_c
        close = where & (np.abs(copy - matched) <= LUMINANCE_TOLERANCE)
        if close.sum() < 0.5 * where.sum():
            break
        where = close
    return matched


def _differences(copy_lab: np.ndarray, original_lab: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Luminance and chroma distance of each copy pixel to the range of the original's values within
    SLACK pixels of it (a misfit of a pixel or two and JPEG noise stay inside that range), once the
    original's brightness and contrast are matched to the copy's over `where`."""
    original_lab = original_lab.copy()
    if where.any():
        original_lab[..., 0] = _matched_tone(original_lab[..., 0], copy_lab[..., 0], where)
    window = np.ones((2 * SLACK + 1,) * 2, np.uint8)
    low, high = cv2.erode(original_lab, window), cv2.dilate(original_lab, window)
    outside = np.maximum(np.maximum(copy_lab - high, low - copy_lab), 0)
    return outside[..., 0], np.hypot(outside[..., 1], outside[..., 2])


def _bars(copy_lab: np.ndarray, differs: np.ndarray, covered: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Caption and letterbox bars laid over the original: from an edge of the copy, a run of rows (or
    columns) that differ from the original, ending in a row of the edge's flat colour, and mostly of
    that colour (the rest: the caption's letters). The transform alone cannot tell a bar added below a
    crop from one painted over the original; the flat colour can. Only the part of a row that the
    original covers is weighed: the rest is added anyway, and a letterbox's bars would otherwise make
    every row of the picture between them look like a bar.
    Returns the mask and the bars' depths (top, bottom, left, right) in panel pixels."""
    bars = np.zeros(differs.shape, bool)
    views = (  # each edge's rows, outermost first: views of the same arrays
        (copy_lab, differs, covered, bars),
        (copy_lab[::-1], differs[::-1], covered[::-1], bars[::-1]),
        (copy_lab.transpose(1, 0, 2), differs.T, covered.T, bars.T),
        (copy_lab.transpose(1, 0, 2)[::-1], differs.T[::-1], covered.T[::-1], bars.T[::-1]),
    )
    depths = []
    for lab, differ, cover, bar in views:
        colour = np.median(lab[0][cover[0]] if cover[0].any() else lab[0], axis=0)
        near = (np.abs(lab[..., 0] - colour[0]) <= BAR_TOLERANCE) & (
            np.hypot(lab[..., 1] - colour[1], lab[..., 2] - colour[2]) <= BAR_TOLERANCE)
        weighed = cover.sum(axis=1)
        differing = ((differ & cover).sum(axis=1) >= BAR_DIFFERING_SHARE * weighed) | (weighed == 0)
        run = len(differing) if differing.all() else int(np.argmin(differing))
        flat = (((near & cover).sum(axis=1) >= BAR_FLAT_SHARE * weighed) | (weighed == 0))[:run]
        depth = int(np.flatnonzero(flat)[-1]) + 1 if flat.any() else 0
        if depth < MIN_BAR_DEPTH or depth > MAX_BAR_SHARE * len(differing) or flat[:depth].mean() < 0.5:
            depth = 0
        depth = min(run, depth + BAR_EDGE) if depth else 0  # the blurred rows where bar and picture meet
        bar[:depth] = True
        depths.append(depth)
    return bars, tuple(depths)


def _regions(mask: np.ndarray, gap: int = 5) -> np.ndarray:
    """Differing pixels as regions a person can see: specks removed, holes and gaps up to `gap` closed."""
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (gap, gap)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= MIN_REGION * mask.size
    return keep[labels]


def _shown_region(to_original: np.ndarray, shown: tuple[float, float, float, float],
                  original_size: tuple[int, int]) -> np.ndarray:
    """The part of the original that the copy shows: the rectangle `shown` (left, top, right, bottom) of
    the copy mapped into the original and clipped to it. Full-size coordinates, (k, 2) float32."""
    x0, y0, x1, y1 = shown
    corners = (to_original[:2] @ np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], np.float64).T).T
    frame = np.float32([[0, 0], [original_size[0], 0], [original_size[0], original_size[1]], [0, original_size[1]]])
    # A mirrored copy's corners run the other way round; the hull puts both in the same order.
    area, region = cv2.intersectConvexConvex(cv2.convexHull(corners.astype(np.float32)), cv2.convexHull(frame))
    return np.zeros((0, 2), np.float32) if region is None or area <= 0 else region.reshape(-1, 2).astype(np.float32)


def _geometry(to_original: np.ndarray) -> dict:
    """Mirror, rotation and scale of the copy relative to the original, from the transform's linear part."""
    linear = np.linalg.inv(to_original)[:2, :2]  # original -> copy
    mirrored = bool(np.linalg.det(linear) < 0)
    if mirrored:
        linear = linear @ np.diag([-1.0, 1.0])  # mirror first, then turn: what an editor does
    # y points down, so a positive angle in the matrix is clockwise on screen.
    rotation = -math.degrees(math.atan2(linear[1, 0], linear[0, 0])) + 0.0  # + 0.0: no "-0.0"
    return dict(mirrored=mirrored, rotation_degrees=rotation, scale=math.sqrt(abs(np.linalg.det(linear))))


def _original_panel(comparison: _Comparison) -> np.ndarray:
    pixels = comparison.original.astype(np.float32)
    shown = np.zeros(pixels.shape[:2], np.uint8)
    outline = np.round(comparison.region * 16).astype(np.int32)  # 4 bits of sub-pixel precision
    if len(outline):
        cv2.fillPoly(shown, [outline], 1, lineType=cv2.LINE_AA, shift=4)
    rows, columns = np.indices(shown.shape)
    hatch = ((rows + columns) % 8 == 0)[..., None]
    cropped_away = pixels * 0.3 + 255 * 0.35 + hatch * 60  # dimmed, greyed, hatched
    picture = np.where(shown[..., None] > 0, pixels, np.clip(cropped_away, 0, 255)).astype(np.uint8)
    if len(outline):
        cv2.polylines(picture, [outline], True, OUTLINE, 2, lineType=cv2.LINE_AA, shift=4)
    return picture


def _difference_panel(comparison: _Comparison) -> np.ndarray:
    c = comparison
    blend = np.where(c.added[..., None], c.copy, (c.copy.astype(np.float32) + c.warped) / 2)
    # Pale and nearly grey, so the tints stand out; a misfit would show as a double contour.
    grey = blend.mean(axis=2, keepdims=True)
    picture = 255 - (255 - (0.75 * grey + 0.25 * blend)) * 0.6
    tinted = ((c.added, ADDED, "added"), (c.changed, CHANGED, "changed"), (c.recoloured, RECOLOURED, "recoloured"))
    for mask, colour, _ in tinted:
        picture[mask] = picture[mask] * (1 - TINT_OPACITY) + np.float32(colour) * TINT_OPACITY
    picture = picture.astype(np.uint8)
    for mask, colour, _ in tinted:
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(picture, contours, -1, colour, 1, lineType=cv2.LINE_AA)
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=FONT_SIZE)
    for mask, _, name in tinted:
        _label(draw, mask, name, font)
    return np.asarray(image)


def _label(draw: ImageDraw.ImageDraw, mask: np.ndarray, name: str, font: ImageFont.ImageFont) -> None:
    """The region's name at its roomiest point, when the region is big enough to hold it."""
    padded = np.pad(mask.astype(np.uint8), 1)  # the panel's edge counts as the region's edge
    room = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    # Of the roomiest points (a bar has a whole row of them), the one nearest their middle.
    roomiest = np.argwhere(room >= room.max() - 1)
    y, x = roomiest[np.argmin(np.linalg.norm(roomiest - roomiest.mean(axis=0), axis=1))]
    half_width, half_height = draw.textlength(name, font=font) / 2 + 2, FONT_SIZE / 2
    box = (int(y - half_height), int(y + half_height) + 1, int(x - half_width), int(x + half_width) + 1)
    fits = box[0] >= 0 and box[2] >= 0 and box[1] <= mask.shape[0] and box[3] <= mask.shape[1]
    if not fits or not mask[box[0]:box[1], box[2]:box[3]].all():
        return
    draw.text((int(x), int(y)), name, fill=(255, 255, 255), font=font, anchor="mm", stroke_width=2, stroke_fill=(0, 0, 0))


def _legend(draw: ImageDraw.ImageDraw, summary: EditSummary, font: ImageFont.ImageFont, top: int) -> None:
    draw.text((MARGIN, top), "the copy " + " · ".join(summary.describe()), fill=(0, 0, 0), font=font)
    x, y = MARGIN, top + FONT_SIZE + 8
    for colour, text in ((ADDED, f"added: {summary.added_fraction:.0%} of the copy"),
                         (CHANGED, f"changed: {summary.changed_fraction:.0%}"),
                         (RECOLOURED, f"recoloured: {summary.recoloured_fraction:.0%}")):
        draw.rectangle((x, y + 1, x + FONT_SIZE - 2, y + FONT_SIZE - 1), fill=colour)
        x += FONT_SIZE + 4
        draw.text((x, y), text, fill=(0, 0, 0), font=font)
        x += draw.textlength(text, font=font) + 18
