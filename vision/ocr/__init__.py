"""OCR and invoice extraction, plain Python (no Django): `engine` (RapidOCR on onnxruntime,
loaded lazily), `layout` (geometry over OCR lines), `normalize` (amounts, dates, currencies),
`invoice` (the layout extractor) and `vlm` (prompt, tolerant JSON, cross-check with the VLM)."""
