"""Operator tools over HTTP (health, status, diagnose, alerts, the support bundle, bench,
chat) and the checks run before `up` (fit); the arithmetic they share is in `planning/`."""
