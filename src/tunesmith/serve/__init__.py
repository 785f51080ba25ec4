"""Serving: the OpenAI-compatible HTTP API (`api.py`, `tunesmith serve`; request checks in
`requests.py`, replies in `replies.py`, Prometheus counters in `metrics.py`) over the continuous
batcher (`batcher.py`), and the terminal chat (`chat.py`, `streaming.py`, `tunesmith chat`), over
one model or a LoRA set of one base."""
