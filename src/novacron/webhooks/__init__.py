"""Webhooks: tenants subscribe URLs to event types; the platform delivers each event, signed."""
