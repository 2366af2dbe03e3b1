"""Monitoring: metrics, alerts, anomaly detection, traces and structured logs (issue 13)."""
