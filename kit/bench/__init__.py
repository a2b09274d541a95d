"""kit bench: the driver (one process per variant), the worker run under pytest-benchmark,
latency statistics, the report and the pytest plugin."""
