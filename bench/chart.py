"""PNG chart of the seed table drawn with PIL (no plotting dependency): seconds per image class for the
baseline, our engine with the baseline's pixels, and our engine at its defaults."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SERIES = (
    ("baseline (transformers fp32)", (200, 80, 70)),
    ("ours, same pixels", (90, 140, 220)),
    ("ours, our defaults", (60, 170, 110)),
)


def seed_chart(data: dict, path: Path) -> None:
    rows = [r for r in data["rows"] if r["baseline"]]
    phases = [p["dtype"] for p in data["phases"]]
    dtype = "auto" if "auto" in phases else (phases[0] if phases else None)
    values = []
    for r in rows:
        ours = r["ours"].get(dtype, {}) if dtype else {}
        values.append(
            (
                r["baseline"]["e2e_s"],
                ours.get("same", {}).get("e2e_s"),
                ours.get("defaults", {}).get("e2e_s"),
            )
        )
    width, height = 1100, 560
    left, right, top, bottom = 80, width - 30, 80, height - 90
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font, small = ImageFont.load_default(size=18), ImageFont.load_default(size=14)
    cores = data["run"]["machine"].get("physical_cores")
    draw.text(
        (left, 15),
        f"Seed table, end-to-end seconds per request (lower is better), {cores} cores, engine formats: {dtype}",
        fill="black",
        font=font,
    )
    top_value = max((v for triple in values for v in triple if v), default=1.0) * 1.1
    for i in range(6):
        y = bottom - i * (bottom - top) / 5
        draw.line((left, y, right, y), fill=(225, 225, 225))
        draw.text((10, y - 8), f"{top_value * i / 5:.0f} s", fill="black", font=small)
    draw.line((left, top, left, bottom), fill="black")
    draw.line((left, bottom, right, bottom), fill="black")
    slot = (right - left) / max(1, len(rows))
    bar = slot / (len(SERIES) + 1)
    for g, (r, triple) in enumerate(zip(rows, values, strict=True)):
        for s, (value, (_, color)) in enumerate(zip(triple, SERIES, strict=True)):
            if not value:
                continue
            x0 = left + g * slot + bar / 2 + s * bar
            y0 = bottom - value / top_value * (bottom - top)
            draw.rectangle((x0, y0, x0 + bar - 4, bottom), fill=color)
            draw.text((x0, y0 - 16), f"{value:.1f}", fill="black", font=small)
        base, _, dflt = triple
        speedup = f"{base / dflt:.1f}x" if base and dflt else ""
        draw.text((left + g * slot + 10, bottom + 8), r["label"], fill="black", font=small)
        draw.text(
            (left + g * slot + 10, bottom + 26), f"{r['size']}, {r['tokens']} tok", fill="gray", font=small
        )
        draw.text((left + g * slot + 10, bottom + 44), f"defaults: {speedup}", fill=(30, 120, 70), font=small)
    x = left
    for name, color in SERIES:
        draw.rectangle((x, 48, x + 16, 64), fill=color)
        draw.text((x + 22, 47), name, fill="black", font=small)
        x += 260
    image.save(path)


def accuracy_heatmap(
    title: str, row_groups: list[tuple[str, dict[str, dict[str, float]]]], columns: list[str], path: Path
) -> None:
    """A table of accuracies as coloured cells (red 80 % or less, green 100 %), one block of rows
    per group (e.g. per layout, then per damage class), one column per field plus 'all'."""
    font, small = ImageFont.load_default(size=18), ImageFont.load_default(size=14)
    label_w, cell_w, cell_h, top = 190, 92, 30, 70
    rows = sum(len(rows) + 1 for _, rows in row_groups)
    width, height = label_w + cell_w * len(columns) + 20, top + rows * cell_h + 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 12), title, fill="black", font=font)
    for c, name in enumerate(columns):
        draw.text((label_w + c * cell_w + 4, top - 22), name[:12], fill="black", font=small)
    y = top
    for group, values in row_groups:
        draw.text((10, y + 8), group, fill=(60, 60, 60), font=font)
        y += cell_h
        for row, cells in values.items():
            draw.text((18, y + 8), row, fill="black", font=small)
            for c, name in enumerate(columns):
                value = cells.get(name)
                if value is None:
                    continue
                t = max(0.0, min(1.0, (value - 0.8) / 0.2))
                color = (int(230 - 150 * t), int(110 + 90 * t), int(100 - 10 * t))
                x0 = label_w + c * cell_w
                draw.rectangle((x0, y + 2, x0 + cell_w - 4, y + cell_h - 2), fill=color)
                draw.text((x0 + 16, y + 8), f"{value * 100:.1f}", fill="black", font=small)
            y += cell_h
    draw.text(
        (10, height - 30),
        "cells: % of fields exact; colour from red (<= 80 %) to green (100 %)",
        fill="gray",
        font=small,
    )
    image.save(path)
