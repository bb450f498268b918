"""warning: a multi-channel early-warning broadcast service (预警叫应: sent, delivered, answered)."""

__version__ = "0.1.0"
