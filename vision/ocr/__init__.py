"""OCR and invoice extraction. Plain Python below this package except where noted: `engine`
(RapidOCR on onnxruntime, loaded lazily), `invoice` (the layout extractor over OCR lines),
`numbers` (amount and date normalisation) and `vlm` (prompt, tolerant JSON, cross-check)."""
