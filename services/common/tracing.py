"""Traces that follow one call through every service it reaches (OpenTelemetry).

Off unless a process asks for it: `configure_tracing` turns it on when the service's settings
name an OTLP endpoint (`SESAME_<SERVICE>_OTLP_ENDPOINT`, a collector's gRPC address such as
`http://otel-collector:4317`) or when a test hands it an exporter of its own. Then:

* every server gets OpenTelemetry's server interceptor outermost (`server_interceptors`,
  `aio_server_interceptors`, added by `services.common.server` and `services.common.aio_server`),
  which continues the caller's trace from the `traceparent` header and makes its span current
  while the handler runs;
* every outbound channel (`services.common.channels.client_channel`) gets the client
  interceptor, which starts a span for each call and sends its `traceparent`, so the next
  service's span joins the same trace. Work handed to other threads keeps the context where
  it is copied (`asyncio.to_thread` does; the score's batch reads copy it themselves).

Health checks, reflection and the ledger's entry stream are left out: they are not part of any
order's story, and a stream's span would last as long as the stream. Sampling and batching follow
OpenTelemetry's own environment variables (`OTEL_TRACES_SAMPLER`, `OTEL_BSP_SCHEDULE_DELAY`, …).
Each process has one tracer provider, set once, named after the service (`service.name`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import trace

# The SDK, the exporter and the instrumentation are imported only once tracing is turned on:
# a service that does not trace does not pay for loading them.
if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

# Calls no trace should hold (their full method names start with these).
UNTRACED_METHOD_PREFIXES = (
    "/grpc.health.",
    "/grpc.reflection.",
    "/sesame.ledger.v1.LedgerService/WatchEntries",
)

_configuring = threading.Lock()
_provider: TracerProvider | None = None


def configure_tracing(
    service_name: str, otlp_endpoint: str, exporter: SpanExporter | None = None
) -> bool:
    """Turns tracing on for this process when `otlp_endpoint` or `exporter` is given; whether
    it is on. Only the first call that turns it on counts (the provider is process-wide)."""
    global _provider
    if not otlp_endpoint and exporter is None:
        return tracing_enabled()
    with _configuring:
        if _provider is not None:
            return True
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(
                endpoint=otlp_endpoint, insecure=_is_plaintext(otlp_endpoint)
            )
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _provider = provider
    return True


def tracing_enabled() -> bool:
    return _provider is not None


def shutdown_tracing() -> None:
    """Sends the spans not sent yet; call as the process stops."""
    if _provider is not None:
        _provider.shutdown()


def server_interceptors() -> list[grpc.ServerInterceptor]:
    """OpenTelemetry's interceptor for a synchronous server, when tracing is on."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import server_interceptor

    interceptor: grpc.ServerInterceptor = server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=_provider, filter_=_traced_server_call
    )
    return [interceptor]


def aio_server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """OpenTelemetry's interceptor for an asyncio server, when tracing is on."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=_provider, filter_=_traced_server_call
    )
    return [interceptor]


def traced_channel(channel: grpc.Channel) -> grpc.Channel:
    """`channel` with a client span per call and the trace sent along, when tracing is on."""
    if _provider is None:
        return channel
    from opentelemetry.instrumentation.grpc import client_interceptor
    from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

    interceptor = client_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=_provider, filter_=_traced_client_call
    )
    traced: grpc.Channel = intercept_channel(channel, interceptor)  # type: ignore[no-untyped-call]
    return traced


def current_trace_id() -> str:
    """The trace the running code is part of, as 32 hex digits; "" outside any."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


def _traced_server_call(handler_call_details: Any) -> bool:
    method = str(getattr(handler_call_details, "method", ""))
    return not method.startswith(UNTRACED_METHOD_PREFIXES)


def _traced_client_call(client_call_details: Any) -> bool:
    # A streamed answer would come back wrapped in a generator, which has no cancel(); the
    # only such call the services make is the entry stream, left out anyway.
    if getattr(client_call_details, "is_server_stream", False):
        return False
    method = str(getattr(client_call_details, "full_method", ""))
    return not method.startswith(UNTRACED_METHOD_PREFIXES)


def _is_plaintext(endpoint: str) -> bool:
    return not endpoint.startswith("https://")
