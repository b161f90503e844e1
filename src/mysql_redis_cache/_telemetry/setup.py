"""A client's or server's Telemetry, when opentelemetry is installed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError

if TYPE_CHECKING:
    from .otel import Telemetry


def telemetry(
    *,
    name: str | None,
    meter_provider: Any,
    tracer_provider: Any,
    trace_keys: bool,
    redis: tuple[str | None, int | None],
    mysql: tuple[str | None, int | None] | None = None,
) -> Telemetry | None:
    """Telemetry for these options, or None without the `otel` extra (then nothing of
    opentelemetry is imported, and the cache runs as before).

    Raises:
        ConfigError: a provider given without the `otel` extra, or a bad name.
    """
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigError(f"name must be a non-empty str, got {name!r}")
    if not isinstance(trace_keys, bool):
        raise ConfigError(f"trace_keys must be True or False, got {trace_keys!r}")
    try:
        from .otel import Telemetry, address
    except ImportError:
        if meter_provider is not None or tracer_provider is not None:
            raise ConfigError(
                "meter_provider and tracer_provider need OpenTelemetry: "
                'pip install "actvalue.mysql-redis-cache[otel]"'
            ) from None
        return None
    servers: Mapping[str, Any] = address(*redis)
    return Telemetry(
        name=name,
        meter_provider=meter_provider,
        tracer_provider=tracer_provider,
        trace_keys=trace_keys,
        redis=servers,
        mysql=None if mysql is None else address(*mysql),
    )
