"""An OTLP/gRPC trace receiver on loopback for the telemetry test.

The receiver is oteltest's GrpcSink (the OpenTelemetry Python project's test
sink, built on the opentelemetry-proto service definitions); only its bind
address is changed, from every interface to 127.0.0.1. Every span received
is written as one JSON line:

  {"service", "roles", "trace_id", "span_id", "parent_span_id", "name",
   "attributes": {key: value}, "events": [{"name", "attributes"}]}

Usage: otlp_sink.py PORT OUT.jsonl   (runs until SIGTERM)
"""

import json
import logging
import signal
import sys
import threading

import grpc
import oteltest.sink as sink
from oteltest.sink.handler import RequestHandler


class LoopbackServer:
    """A grpc.Server whose insecure ports bind to 127.0.0.1 only."""

    def __init__(self, server):
        self._server = server

    def add_insecure_port(self, address):
        return self._server.add_insecure_port(address.replace("0.0.0.0", "127.0.0.1"))

    def __getattr__(self, name):
        return getattr(self._server, name)


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


class JsonLines(RequestHandler):
    def __init__(self, path):
        self.out = open(path, "a", encoding="utf-8")
        self.lock = threading.Lock()

    def handle_trace(self, request, headers):  # noqa: ARG002
        lines = []
        for rs in request.resource_spans:
            resource = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    lines.append(
                        json.dumps(
                            {
                                "service": resource.get("service.name"),
                                "roles": resource.get("liverseg.roles"),
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex(),
                                "name": span.name,
                                "start_ns": span.start_time_unix_nano,
                                "end_ns": span.end_time_unix_nano,
                                "attributes": attributes(span.attributes),
                                "events": [
                                    {"name": e.name, "attributes": attributes(e.attributes)}
                                    for e in span.events
                                ],
                            }
                        )
                    )
        with self.lock:
            for line in lines:
                self.out.write(line + "\n")
            self.out.flush()

    def handle_metrics(self, request, headers):  # noqa: ARG002
        pass

    def handle_logs(self, request, headers):  # noqa: ARG002
        pass


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    real_server = grpc.server
    sink.grpc.server = lambda *a, **k: LoopbackServer(real_server(*a, **k))
    logging.basicConfig(level=logging.WARNING)
    receiver = sink.GrpcSink(JsonLines(path), logging.getLogger("otlp-sink"), port=port)
    receiver.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    receiver.stop()


if __name__ == "__main__":
    main()
