"""Local-mode runtime: start, stop and watch the platform's processes."""
