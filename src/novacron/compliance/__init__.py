"""Compliance: a catalogue of controls (SOC 2, ISO 27001, GDPR, HIPAA, PCI-DSS) checked against the
platform's real configuration and state, the evidence of each run, drift events, and GDPR export
and erasure of a tenant."""
