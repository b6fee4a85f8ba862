"""`gpucluster bench`: a streaming load generator for any OpenAI-compatible endpoint.

workload.py (what is sent, when), runner.py (sending and timing), stats.py (pure statistics),
report.py (the JSON report, comparisons), chart.py (throughput vs latency PNG).
"""
