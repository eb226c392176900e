"""Reliability runs against real servers: the fault matrix and the soak (docs/reliability.md)."""
