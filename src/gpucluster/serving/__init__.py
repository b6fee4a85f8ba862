"""Serve application: Ray Serve LLM configs, the OpenAI ingress and the LLM deployment."""
