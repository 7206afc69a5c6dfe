"""Naive, independent reference implementations used by the tests (one module per domain)."""
