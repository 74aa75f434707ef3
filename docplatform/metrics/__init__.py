"""Prometheus metrics (README "Metrics"): the web process's own series (`web.py`), every worker's
series read from its heartbeat in Redis (`collectors.py`, recorded by `recorder.py`), and the
token-protected endpoint (`views.py`)."""
