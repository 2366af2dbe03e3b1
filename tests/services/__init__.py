"""Real outside services started for tests (PostgreSQL, ...), each from Debian's or PyPI's packages."""
