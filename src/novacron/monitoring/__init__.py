"""Monitoring: the metrics store and its writers, the platform's own metrics, tenant queries, alerts,
SLOs, tracing and anomaly detection, each on a real engine where one exists."""
