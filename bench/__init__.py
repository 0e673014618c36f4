"""Corral's benchmarks: ``python -m bench`` (or ``make bench``) prints one table.

Every row runs against the local RabbitMQ in a fresh namespace, starts real
Corral processes where it measures Corral, and stops everything it started.
See docs/benchmarks.md for the figures and how to reproduce them.
"""
