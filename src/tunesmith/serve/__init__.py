"""Serving: the OpenAI-compatible HTTP API (`api.py`, `tunesmith serve`) and the terminal chat
(`chat.py`, `tunesmith chat`), over one model or a LoRA set of one base."""
