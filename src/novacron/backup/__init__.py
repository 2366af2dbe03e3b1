"""Backups: the chunk store (store.py) over object-storage targets (targets.py), keys, garbage
collection, retention and replication. The VM side (change tracking, API, tasks) builds on
``ChunkStore``."""
