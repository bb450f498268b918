"""Redis: the connection (remote or embedded) and the key builder."""

from warning.store.connection import Keyspace, Store, open_store

__all__ = ["Keyspace", "Store", "open_store"]
