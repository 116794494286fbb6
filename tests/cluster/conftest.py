"""Fixtures of the cluster tests: hubs behind a private haproxy (tests/balancer.py)."""

from balancer import cluster_behind_haproxy

__all__ = ["cluster_behind_haproxy"]
