"""Serving: terminal chat now; the OpenAI-compatible API comes later (see README)."""
