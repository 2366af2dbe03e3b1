"""Alerts: rules evaluated by vmalert, routed by Alertmanager, delivered by the platform."""
