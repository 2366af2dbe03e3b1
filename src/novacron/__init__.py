"""NovaCron: a distributed virtual-machine management platform."""

__version__ = "0.1.0"
