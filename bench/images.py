"""The article's five image classes as realistic synthetic pictures, at the article's resolutions.

Random weights do not care what an image shows, but the pixel count decides the image-token count
and the vision tower's cost, and a busy image (text, edges, noise) compresses and resizes like a real
one. Every picture is seeded, so runs compare the same pixels; `variant` gives distinct pictures
(distinct digests: no cache hit between requests that should not share one).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter, ImageFont

WORDS = tuple(
    [
        "invoice",
        "total",
        "amount",
        "due",
        "date",
        "account",
        "number",
        "payment",
        "terms",
        "net",
        "thirty",
        "days",
        "item",
        "description",
        "quantity",
        "unit",
        "price",
        "tax",
        "subtotal",
        "balance",
        "customer",
        "address",
        "delivery",
        "order",
        "reference",
        "page",
        "of",
        "report",
        "summary",
        "quarterly",
        "revenue",
        "growth",
        "region",
        "north",
        "south",
        "east",
        "west",
        "product",
        "service",
    ]
)


@dataclass(frozen=True)
class SeedRow:
    key: str
    label: str  # as the article names it
    width: int
    height: int
    tokens: int  # output length in the article's table
    article_s: float  # the article's latency, 12-core Xeon Silver 4310, fp32, transformers
    task: str  # our pixel budget for this kind of request (PixelBudget.for_task)
    prompt: str


SEED_ROWS: tuple[SeedRow, ...] = (
    SeedRow(
        "document",
        "document scan",
        1240,
        1754,
        96,
        8.2,
        "ocr",
        "Extract all text on this page, keep the table.",
    ),
    SeedRow("street", "street photo", 1920, 1080, 134, 11.5, "caption", "Describe this picture in detail."),
    SeedRow("chart", "chart", 800, 600, 112, 9.7, "vqa", "What trend does this chart show?"),
    SeedRow(
        "product", "product package", 1080, 1080, 88, 10.3, "vqa", "What product is this and who makes it?"
    ),
    SeedRow("sketch", "hand sketch", 720, 540, 74, 7.6, "caption", "What does this sketch show?"),
)
ROWS_BY_KEY = {row.key: row for row in SEED_ROWS}


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize()


def _noise(image: Image.Image, rng: random.Random, amount: int) -> Image.Image:
    """Sensor/scan noise: a seeded noise layer blended in (keeps JPEG-like statistics busy)."""
    noise = Image.effect_noise(image.size, amount).convert("RGB")
    shift = Image.new("RGB", image.size, (rng.randint(0, 20),) * 3)
    return Image.blend(image, Image.blend(noise, shift, 0.5), 0.08)


def document(width: int, height: int, rng: random.Random) -> Image.Image:
    page = Image.new("RGB", (width, height), (248, 246, 240))
    draw = ImageDraw.Draw(page)
    margin = width // 12
    y = margin
    draw.text((margin, y), f"INVOICE No. {rng.randint(10000, 99999)}", fill=(10, 10, 10), font=_font(42))
    y += 80
    body = _font(18)
    for _ in range(14):
        draw.text((margin, y), _sentence(rng, rng.randint(8, 13)), fill=(25, 25, 30), font=body)
        y += 28
    y += 30
    cols = [margin, margin + 380, margin + 560, margin + 760, width - margin]
    rows = 16
    for r in range(rows + 1):
        draw.line(
            (cols[0], y + r * 34, cols[-1], y + r * 34), fill=(60, 60, 60), width=2 if r in (0, 1) else 1
        )
    for c in cols:
        draw.line((c, y, c, y + rows * 34), fill=(60, 60, 60), width=1)
    for r in range(rows):
        cells = (
            ["Description", "Qty", "Unit", "Amount"]
            if r == 0
            else [
                _sentence(rng, 3),
                str(rng.randint(1, 40)),
                f"{rng.uniform(1, 300):.2f}",
                f"{rng.uniform(10, 9000):.2f}",
            ]
        )
        for c, text in enumerate(cells):
            draw.text((cols[c] + 8, y + r * 34 + 7), text, fill=(20, 20, 20), font=body)
    y += rows * 34 + 40
    while y < height - margin:
        draw.text((margin, y), _sentence(rng, rng.randint(8, 13)), fill=(25, 25, 30), font=body)
        y += 28
    page = page.rotate(0.4, resample=Image.Resampling.BICUBIC, fillcolor=(235, 233, 228))
    return _noise(page, rng, 40)


def street(width: int, height: int, rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    horizon = int(height * 0.55)
    for y in range(horizon):  # sky gradient
        t = y / horizon
        draw.line((0, y, width, y), fill=(int(90 + 120 * t), int(140 + 80 * t), int(220 - 30 * t)))
    x = 0
    while x < width:  # buildings with windows
        w = rng.randint(120, 300)
        top = rng.randint(int(height * 0.1), int(height * 0.4))
        color = tuple(rng.randint(60, 200) for _ in range(3))
        draw.rectangle((x, top, x + w, horizon), fill=color)
        for wy in range(top + 15, horizon - 20, 38):
            for wx in range(x + 12, x + w - 20, 32):
                lit = rng.random() < 0.3
                draw.rectangle((wx, wy, wx + 18, wy + 24), fill=(250, 230, 150) if lit else (40, 50, 70))
        x += w + rng.randint(0, 20)
    draw.rectangle((0, horizon, width, height), fill=(70, 70, 75))  # road
    for lane in range(0, width, 160):
        draw.rectangle((lane, int(height * 0.78), lane + 90, int(height * 0.79)), fill=(240, 240, 240))
    for _ in range(9):  # cars
        cx, cy = rng.randint(0, width - 260), rng.randint(horizon + 20, height - 120)
        color = tuple(rng.randint(0, 255) for _ in range(3))
        draw.rounded_rectangle((cx, cy, cx + 240, cy + 80), radius=22, fill=color)
        draw.ellipse((cx + 25, cy + 55, cx + 75, cy + 105), fill=(15, 15, 15))
        draw.ellipse((cx + 165, cy + 55, cx + 215, cy + 105), fill=(15, 15, 15))
    for _ in range(7):  # trees and people
        tx = rng.randint(0, width)
        draw.rectangle((tx, horizon - 40, tx + 14, horizon + 40), fill=(90, 60, 30))
        draw.ellipse((tx - 60, horizon - 160, tx + 74, horizon - 20), fill=(30, rng.randint(100, 160), 40))
    draw.text((40, 40), "MAIN ST", fill=(255, 255, 255), font=_font(48))
    image = image.filter(ImageFilter.GaussianBlur(0.8))
    return _noise(image, rng, 60)


def chart(width: int, height: int, rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 80, width - 40, 70, height - 70
    draw.text((left, 20), "Quarterly revenue by region", fill="black", font=_font(26))
    for i in range(6):
        y = bottom - i * (bottom - top) / 5
        draw.line((left, y, right, y), fill=(220, 220, 220))
        draw.text((20, y - 9), f"{i * 20}", fill="black", font=_font(16))
    draw.line((left, top, left, bottom), fill="black", width=2)
    draw.line((left, bottom, right, bottom), fill="black", width=2)
    groups, colors = 8, [(66, 133, 244), (219, 68, 55), (244, 180, 0)]
    slot = (right - left) / groups
    line_points = []
    for g in range(groups):
        for s, color in enumerate(colors):
            h = rng.uniform(0.1, 0.95) * (bottom - top)
            x0 = left + g * slot + 8 + s * (slot - 16) / 3
            draw.rectangle((x0, bottom - h, x0 + (slot - 16) / 3 - 3, bottom), fill=color)
        draw.text(
            (left + g * slot + 10, bottom + 10), f"Q{g % 4 + 1}-{24 + g // 4}", fill="black", font=_font(14)
        )
        line_points.append((left + (g + 0.5) * slot, bottom - rng.uniform(0.3, 0.9) * (bottom - top)))
    draw.line(line_points, fill=(15, 157, 88), width=4)
    for px, py in line_points:
        draw.ellipse((px - 6, py - 6, px + 6, py + 6), fill=(15, 157, 88))
    return image


def product(width: int, height: int, rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):  # studio backdrop
        v = int(200 + 40 * math.sin(y / height * math.pi))
        draw.line((0, y, width, y), fill=(v, v - 10, v - 25))
    box = [(230, 180), (800, 140), (860, 900), (260, 960)]
    draw.polygon(box, fill=(200, 30, 45), outline=(90, 10, 20))
    draw.polygon([(230, 180), (800, 140), (760, 90), (200, 120)], fill=(230, 80, 90))
    draw.ellipse((420, 260, 620, 460), fill=(255, 215, 0), outline=(120, 90, 0), width=6)
    draw.text((455, 330), "ACME", fill=(120, 20, 20), font=_font(44))
    draw.text((300, 520), "CRUNCHY OAT FLAKES", fill="white", font=_font(46))
    draw.text((320, 590), "Whole grain - 500 g - high fibre", fill=(255, 235, 235), font=_font(26))
    for i in range(6):
        draw.text((320, 650 + i * 32), _sentence(rng, 5), fill=(255, 220, 220), font=_font(20))
    x = 600
    for _ in range(40):  # barcode
        w = rng.choice((2, 3, 5))
        draw.rectangle((x, 820, x + w, 900), fill="black")
        x += w + rng.choice((2, 3, 4))
    image = image.filter(ImageFilter.GaussianBlur(0.6))
    return _noise(image, rng, 30)


def sketch(width: int, height: int, rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (width, height), (250, 248, 238))
    draw = ImageDraw.Draw(image)

    def stroke(points: list[tuple[float, float]]) -> None:
        jittered = [(x + rng.uniform(-2, 2), y + rng.uniform(-2, 2)) for x, y in points]
        draw.line(jittered, fill=(40, 40, 60), width=rng.choice((2, 3)), joint="curve")

    # a house, a sun, a tree, a person, some scribbled hatching
    stroke([(150, 400), (150, 250), (300, 160), (450, 250), (450, 400), (150, 400)])
    stroke([(260, 400), (260, 320), (320, 320), (320, 400)])
    cx, cy, r = 600, 100, 50
    stroke(
        [
            (cx + r * math.cos(a / 20 * 2 * math.pi), cy + r * math.sin(a / 20 * 2 * math.pi))
            for a in range(21)
        ]
    )
    for a in range(0, 360, 30):
        rad = math.radians(a)
        stroke(
            [
                (cx + 65 * math.cos(rad), cy + 65 * math.sin(rad)),
                (cx + 95 * math.cos(rad), cy + 95 * math.sin(rad)),
            ]
        )
    stroke([(560, 480), (560, 330)])
    for _ in range(25):
        stroke([(560 + rng.uniform(-70, 70), 300 + rng.uniform(-60, 40)) for _ in range(4)])
    stroke([(80, 470), (80, 420)])
    stroke([(60, 440), (100, 440)])
    for i in range(30):
        stroke([(170 + i * 9, 380), (190 + i * 9, 340)])
    draw.text((30, 20), "idea v2 ?", fill=(60, 60, 90), font=_font(28))
    return _noise(image, rng, 20)


_DRAW = {"document": document, "street": street, "chart": chart, "product": product, "sketch": sketch}


def render(key: str, size: tuple[int, int] | None = None, variant: int = 0) -> Image.Image:
    """The picture for a seed row (`key`), at the article's size unless `size` is given."""
    row = ROWS_BY_KEY[key]
    width, height = size or (row.width, row.height)
    rng = random.Random(f"{key}-{variant}")
    image = _DRAW[key](width, height, rng)
    assert image.size == (width, height), (key, image.size)
    return image
