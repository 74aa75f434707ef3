"""DRF APIs under /api, one module per resource. Each API parses, calls one service or selector,
and serializes."""
