"""Tools for tests and benchmarks, not used when serving: the random-weight checkpoint writer
(`python -m vision.engine.testing.checkpoint`) and the text its tokenizer is trained on."""
