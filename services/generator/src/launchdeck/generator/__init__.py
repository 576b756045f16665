"""Launchdeck package."""
