"""OCR and invoice extraction, plain Python (no Django): `engine` (RapidOCR on onnxruntime,
loaded lazily; its data types in `lines`, its settings in `engine_settings`), `textlayer*` (PDF text
layers), `pdf_render` (a PDF page as pixels), `layout` (geometry over OCR lines), `normalize`
(amounts, dates, currencies), `invoice` (the layout extractor; its parts in `invoice_*`), `taxid`
(tax IDs and IBANs), `einvoice*` (XML e-invoices) and `vlm` (prompt, tolerant JSON, cross-check
with the VLM)."""
