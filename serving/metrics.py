"""The server's Prometheus metrics, kept and rendered by ``prometheus_client`` (which escapes label values: a model
named ``a"b`` is written ``model="a\\"b"``).

Each :class:`Metrics` has its own collector registry holding the predict counters and histograms, the process
metrics (CPU seconds, resident memory, open files, start time), the Python platform and GC metrics, and a
collector that reads the model registry at scrape time (reloads, version in service).
"""

from __future__ import annotations

import contextlib
import time

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, GCCollector, Histogram,
                               PlatformCollector, ProcessCollector, generate_latest)
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class _ModelCollector:
    """``rnn_model_reloads_total`` and ``rnn_model_version`` by model, read from the model registry when scraped."""

    def __init__(self):
        self.registry = None  # the serving.registry.Registry, set by Metrics.watch

    def collect(self):
        reloads = GaugeMetricFamily("rnn_model_reloads_total", "Hot reloads swapped in, by model.", labels=["model"])
        version = GaugeMetricFamily("rnn_model_version", "Version of the model in service (1 + reloads).",
                                    labels=["model"])
        for entry in self.registry.entries() if self.registry is not None else []:
            reloads.add_metric([entry.name], self.registry.reloads.get(entry.name, 0))
            version.add_metric([entry.name], entry.version)
        yield reloads
        yield version


class Metrics:
    """Per-model predict metrics of one server (any protocol: ``/v1``, KServe v2, TF Serving REST)."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter("rnn_requests", "Predict requests answered, by model.", ["model"], registry=reg)
        self.inputs = Counter("rnn_inputs", "Inputs predicted (a request may hold several), by model.", ["model"],
                              registry=reg)
        self.errors = Counter("rnn_errors", "Predict requests answered with an error, by model and error code.",
                              ["model", "code"], registry=reg)
        self.latency = Histogram("rnn_request_latency_seconds", "Predict request latency, by model.", ["model"],
                                 buckets=LATENCY_BUCKETS, registry=reg)
        self.batches = Histogram("rnn_batch_size", "Inputs per onnxruntime call made by the dynamic batcher.",
                                 ["model"], buckets=BATCH_BUCKETS, registry=reg)
        self.in_flight_gauge = Gauge("rnn_in_flight_requests", "Predict requests being handled now.", registry=reg)
        self.in_flight = 0
        self._models = _ModelCollector()
        reg.register(self._models)
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)

    def watch(self, model_registry) -> None:
        """Reports the reloads and versions of ``model_registry``'s models."""
        self._models.registry = model_registry

    def observe(self, model: str, seconds: float, inputs: int, code: str | None) -> None:
        self.requests.labels(model).inc()
        self.inputs.labels(model).inc(inputs)
        self.latency.labels(model).observe(seconds)
        if code is not None:
            self.errors.labels(model, code).inc()

    def batch(self, model: str, size: int) -> None:
        self.batches.labels(model).observe(size)

    @contextlib.contextmanager
    def track(self, model: str):
        """Counts one predict request: in flight while the block runs, then its latency, its input count
        (``tracked.inputs``, set by the block) and the error code of an exception with a ``code`` attribute."""
        tracked = _Tracked()
        start = time.perf_counter()
        self.in_flight += 1
        self.in_flight_gauge.inc()
        try:
            yield tracked
        except Exception as err:
            tracked.code = getattr(err, "code", None) or "internal_error"
            raise
        finally:
            self.in_flight -= 1
            self.in_flight_gauge.dec()
            self.observe(model, time.perf_counter() - start, tracked.inputs, tracked.code)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Tracked:
    inputs = 0
    code: str | None = None
