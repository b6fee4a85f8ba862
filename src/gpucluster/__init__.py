"""gpu-cluster: an LLM serving platform — vLLM on Ray Serve behind nginx, with metrics and operator tools."""

__version__ = "0.1.0"
