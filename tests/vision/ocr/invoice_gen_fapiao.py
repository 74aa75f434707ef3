"""The invoice generator's Chinese VAT fapiao (`fapiao_grid`: 数电发票 with 购买方/销售方 side by side,
`fapiao_stacked`: the older form with the parties stacked), drawn on the `Canvas` class the caller
passes."""

from __future__ import annotations

from decimal import Decimal

from PIL import Image

from tests.vision.ocr.invoice_gen_canvas import Canvas, Style
from tests.vision.ocr.invoice_gen_truth import Truth, cents
from tests.vision.ocr.invoice_gen_words import ZH_CITY, ZH_UNITS, chinese_uppercase


def draw_fapiao(
    t: Truth,
    s: Style,
    side_by_side: bool,
    buyer_id: str,
    seller_id: str,
    rate: Decimal,
    *,
    canvas: type[Canvas],
) -> list[Image.Image]:
    c = canvas((1600, 1000), "cjk")
    rng = s.rng
    title = rng.choice(
        ["电子发票（增值税专用发票）", "电子发票（普通发票）", "增值税普通发票", "增值税专用发票"]
    )
    c.text(800, 40, title, 40, align="center")
    c.draw.line((600, 100, 1000, 100), fill=(150, 60, 60), width=3)
    c.text(1160, 60, "发票号码：", 22)
    c.text(1160 + c.width("发票号码：", 22), 60, t.invoice_number, 22)
    c.text(1160, 100, "开票日期：", 22)
    day = t.invoice_date
    c.text(1160 + c.width("开票日期：", 22), 100, f"{day.year}年{day.month:02d}月{day.day:02d}日", 22)
    x0, x1 = 60, 1540
    top = 160
    c.rect((x0, top, x1, 900))
    parties = [
        ("购买方信息" if side_by_side else "购买方", t.buyer or "", buyer_id),
        ("销售方信息" if side_by_side else "销售方", t.seller, seller_id),
    ]
    id_label = rng.choice(["统一社会信用代码/纳税人识别号：", "纳税人识别号："])
    if side_by_side:
        bottom = top + 150
        mid = (x0 + x1) // 2
        c.vline(mid, top, bottom)
        c.hline(x0, x1, bottom)
        for n, (party, name, tax_id) in enumerate(parties):
            bx = x0 if n == 0 else mid
            c.vline(bx + 50, top, bottom)
            for k, char in enumerate(party):
                c.text(bx + 14, top + 12 + k * 26, char, 20)
            c.text(bx + 66, top + 30, "名称：", 22)
            c.text(bx + 66 + c.width("名称：", 22), top + 30, name, 22)
            c.text(bx + 66, top + 88, id_label, 18)
            c.text(bx + 66 + c.width(id_label, 18), top + 88, tax_id, 18)
        y = bottom
    else:
        y = top
        for party, name, tax_id in parties[:1]:  # the seller's block comes below the totals
            bottom = y + 140
            c.vline(x0 + 50, y, bottom)
            for k, char in enumerate(party):
                c.text(x0 + 14, y + 20 + k * 34, char, 22)
            c.text(x0 + 66, y + 20, "名    称：", 22)
            c.text(x0 + 66 + c.width("名    称：", 22), y + 20, name, 22)
            c.text(x0 + 66, y + 60, id_label, 20)
            c.text(x0 + 66 + c.width(id_label, 20), y + 60, tax_id, 20)
            c.text(
                x0 + 66,
                y + 98,
                f"地 址、电 话：{rng.choice(ZH_CITY)}市{rng.randint(1, 99)}号 0{rng.randint(10, 99)}-{rng.randint(10000000, 99999999)}",
                18,
            )
            c.hline(x0, x1, bottom)
            y = bottom
    # item table
    cols = [x0 + 20, 560, 700, 780, 900, 1080, 1260, 1330, 1520]
    heads = ["项目名称", "规格型号", "单位", "数量", "单价", "金额", "税率/征收率", "", "税额"]
    c.text(cols[0], y + 14, heads[0], 20)
    for x, head in zip(cols[1:], heads[1:], strict=True):
        if head:
            c.text(x, y + 14, head, 20, align="right" if x > 700 else "left")
    y += 56
    tax_lines = []
    for item in t.items:
        line_tax = cents(item.amount * rate)
        tax_lines.append(line_tax)
        c.text(cols[0], y, item.description, 20)
        c.text(cols[2], y, rng.choice(ZH_UNITS), 20)
        c.text(cols[3], y, str(item.quantity), 20, align="right")
        c.text(cols[4], y, f"{item.unit_price:.2f}", 20, align="right")
        c.text(cols[5], y, f"{item.amount:.2f}", 20, align="right")
        c.text(cols[6], y, f"{rate * 100:.0f}%", 20, align="right")
        c.text(cols[8], y, f"{line_tax:.2f}", 20, align="right")
        y += 38
    y = max(y + 20, 560)
    c.text(cols[0] + 40, y, "合        计", 20)
    c.text(cols[5], y, f"¥{t.subtotal:.2f}", 20, align="right")
    c.text(cols[8], y, f"¥{t.tax:.2f}", 20, align="right")
    y += 50
    c.hline(x0, x1, y)
    c.text(cols[0], y + 18, "价税合计（大写）", 22)
    c.text(cols[0] + 260, y + 18, f"ⓧ{chinese_uppercase(t.total)}", 22)
    c.text(1100, y + 18, "（小写）", 22)
    c.text(1100 + c.width("（小写）", 22), y + 18, f"¥{t.total:.2f}", 22)
    y += 70
    c.hline(x0, x1, y)
    if not side_by_side:
        _, name, tax_id = parties[1]
        c.vline(x0 + 50, y, y + 140)
        for k, char in enumerate(parties[1][0]):
            c.text(x0 + 14, y + 20 + k * 34, char, 22)
        c.text(x0 + 66, y + 20, "名    称：", 22)
        c.text(x0 + 66 + c.width("名    称：", 22), y + 20, name, 22)
        c.text(x0 + 66, y + 60, id_label, 20)
        c.text(x0 + 66 + c.width(id_label, 20), y + 60, tax_id, 20)
        c.text(
            x0 + 66, y + 98, f"开户行及账号：{rng.choice(ZH_CITY)}银行 {rng.randint(10**15, 10**16 - 1)}", 18
        )
        y += 140
        c.hline(x0, x1, y)
    c.text(x0 + 20, y + 16, f"备注：电话 0{rng.randint(10, 99)}-{rng.randint(10000000, 99999999)}", 18)
    c.text(x0 + 20, 920, f"开票人：{rng.choice(['张伟', '王芳', '李娜', '刘洋'])}", 20)
    return [c.image]
