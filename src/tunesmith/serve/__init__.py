"""Serving: the OpenAI-compatible HTTP API (`tunesmith serve`: the app in `api.py`, the model host
in `host.py`, the completion routes in `completions.py` over the chat and text formats of
`formats.py`; request checks in `requests.py`, replies in `replies.py`, Prometheus counters in
`metrics.py`) over the continuous batcher (`batcher.py`), and the terminal chat (`chat.py`,
`streaming.py`, `tunesmith chat`), over one model or a LoRA set of one base."""
