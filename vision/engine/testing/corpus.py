"""Built-in training text for the random-weight checkpoint's byte-level BPE tokenizer.

Small on purpose (a few KB): it only has to give the tokenizer realistic merges for the
kinds of text the platform sees (English prose, Simplified Chinese, numbers, dates,
amounts, JSON and markup), so prompts tokenize into word-like pieces instead of single
bytes. Any text still round-trips, because the tokenizer falls back to its 256 byte tokens.
Changing this text changes every token id: bump `vision.engine.testing.checkpoint.WRITER_VERSION` when you do.
"""

ENGLISH = """\
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
Please read the attached invoice and extract the vendor name, the invoice number, the date,
the total amount and the currency. Return the answer as JSON with these keys only.
Describe this image. What is written on the page? Summarize the document in three sentences.
The document is a scanned letter from the city council about the new parking regulations.
The receipt shows two coffees, one sandwich and a bottle of water, paid by card.
Table 1 lists the quarterly revenue for each region: North, South, East and West.
The contract starts on the first of January and ends on the thirty-first of December.
Signature, stamp and handwritten notes appear at the bottom of the second page.
You are a helpful assistant. Answer the question about the picture as briefly as possible.
The user uploaded a photo of a street sign, a screenshot of a web page and a chart.
There is a cat sitting on a wooden table next to a window, and the sun is shining.
Invoices, receipts, bank statements, identity cards, forms and handwritten notes are common.
The patient was admitted on Monday morning and discharged on Thursday afternoon.
Shipping address: 221B Baker Street, London. Billing address: 1600 Pennsylvania Avenue.
Please check the spelling, the grammar and the numbers before you send the final report.
This model reads text in images, answers questions, and extracts structured fields.
It is important that the answer is correct, complete and easy to understand.
We would like to thank you for your order and hope to see you again soon.
Line items: description, quantity, unit price, tax rate, discount and line total.
The meeting has been moved to Wednesday at three o'clock in the main conference room.
"""

CHINESE = """\
请阅读附件中的发票，提取供应商名称、发票号码、开票日期、总金额和币种，并以JSON格式返回。
这是一张扫描的合同文件，第一页是封面，第二页是条款，最后一页有双方的签名和盖章。
图片中有一只猫坐在窗边的木桌上，阳光照进房间，桌上还放着一杯咖啡。
请描述这张图片的内容，并回答用户提出的问题。你是一个乐于助人的助手。
本公司于二零二四年三月十五日成立，注册资本为人民币一百万元整。
收据显示：两杯咖啡，一个三明治，一瓶矿泉水，使用银行卡支付。
表格列出了各地区的季度收入：华北、华南、华东和华西。
患者于周一上午入院，周四下午出院，住院期间情况稳定。
请检查拼写、语法和数字，然后再发送最终报告。
身份证、银行对账单、申请表和手写笔记都是常见的文档类型。
会议改到星期三下午三点，在主会议室举行，请准时参加。
这个模型可以识别图片中的文字，回答问题，并提取结构化的字段。
中华人民共和国 北京市 上海市 广州市 深圳市 杭州市 南京市 成都市 武汉市
我们感谢您的订购，期待再次为您服务。如有任何问题，请随时与我们联系。
数量、单价、税率、折扣和小计都需要核对清楚。总计：人民币三千五百元。
"""

NUMBERS_AND_PUNCTUATION = """\
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 20 25 32 50 64 99 100 128 256 512 1000 1024 2048
2024-01-15 2025-12-31 31/12/2025 12:30 08:45:00 +49 30 1234567 €1,234.56 $99.99 ¥3,500.00 45%
Invoice No. INV-2024-00042, Order #A17-553, VAT 19%, IBAN DE89 3704 0044 0532 0130 00.
Hello, world! (a) [b] {c} <d> "quoted" 'single' a-b a_b a/b a\\b a|b a;b a:b a.b a,b a?b a!b
... -- --- *** ### @@ && || == != <= >= -> => :: // /* */ <!-- --> ``` ~~~ ^^ %% $$
，。！？；：“”‘’（）【】《》、……——·
"""

JSON_AND_MARKUP = """\
{"vendor": "ACME GmbH", "invoice_number": "INV-2024-00042", "date": "2024-03-15", "total": 1234.56, "currency": "EUR"}
{"name": "张三", "city": "北京", "amount": 3500, "paid": true, "items": [{"sku": "A1", "qty": 2}, {"sku": "B7", "qty": 1}]}
[{"role": "user", "content": "What is in the image?"}, {"role": "assistant", "content": "A cat."}]
{"type": "object", "properties": {"title": {"type": "string"}, "pages": {"type": "integer"}}, "required": ["title"]}
<table><tr><th>Item</th><th>Qty</th><th>Price</th></tr><tr><td>Coffee</td><td>2</td><td>3.50</td></tr></table>
# Heading\n\n- first item\n- second item\n\n**bold** and _italic_ text, `code`, and a [link](https://example.com).
def extract(fields: list[str]) -> dict[str, str]:\n    return {field: "" for field in fields}
"""


def corpus() -> list[str]:
    """The training lines, in a fixed order so the trained tokenizer is reproducible."""
    text = ENGLISH + CHINESE + NUMBERS_AND_PUNCTUATION + JSON_AND_MARKUP
    return [line for line in text.splitlines() if line.strip()]
