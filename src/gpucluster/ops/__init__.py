"""Operator tools over HTTP (health, status, diagnose, capacity)."""
