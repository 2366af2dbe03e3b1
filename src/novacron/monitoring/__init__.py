"""Monitoring: metrics, alerts, SLOs, tracing and anomaly detection (issue 13)."""
