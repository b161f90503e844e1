"""OpenTelemetry metrics and traces, when the `otel` extra (opentelemetry-api) is
installed; nothing at all otherwise (nothing of it is imported).

Counts a hit would pay for per call are observed from `CacheStats` when a reader
collects them, so a hit costs nothing more; spans are made only while a tracer provider
records. It may import `_errors` and `_stats`.
"""
