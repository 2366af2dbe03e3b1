"""Live configuration: settings an operator changes while the platform runs, validated, versioned,
audited and applied to every replica without a restart (``schema``, ``service``, ``live``)."""
