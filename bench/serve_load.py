"""Load test for `tunesmith serve` (or any OpenAI-compatible server): N concurrent clients, fixed time.

    tunesmith serve --port 8000 &                       # the embedded SmolLM2-135M
    python bench/serve_load.py --url http://127.0.0.1:8000 --clients 1 8 32 --seconds 60

Each client sends streamed chat requests back to back (a prompt drawn in turn from a fixed list,
greedy, `--max-tokens` new tokens) until the time is up; requests still running then are cut
(their connections closed). Only what happened inside the window counts: output tokens/s is every
token streamed before the deadline (cut requests included) over the window; requests/s, latency
p50/p95/p99 are those of requests completed in it; time to first token (the first chunk with
text) is that of every request that got one. Errors are counted by HTTP status. Output tokens are
the streamed text re-tokenised with the embedded model's tokenizer (the same count for any server,
whether or not it reports usage in its stream). A server that cannot cancel a dropped request
(one-at-a-time serving) is stuck after a cut: restart it between runs. Prints one markdown row per client count (and
`--json` writes them), with the machine's load average before and after, since the figures depend
on what else runs on the CPU.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import threading
import time
from urllib.parse import urlparse

PROMPTS = [
    "Explain in a few sentences why the sky is blue.",
    "Write a short poem about a lighthouse keeper.",
    "What are three tips for writing clear emails?",
    "Describe how a bicycle works.",
    "Give me a recipe for a simple tomato soup.",
    "Why do cats purr?",
    "Summarise the plot of a heist story you invent.",
    "List some ways to save energy at home.",
]


def one_request(
    url,
    model: str | None,
    prompt: str,
    max_tokens: int,
    api_key: str | None,
    timeout: float,
    deadline: float = float("inf"),
) -> dict:
    """One streamed chat request: {'status', 'ttft', 'latency', 'text', 'cut'}; read until `deadline`
    (perf_counter), then closed with what it streamed so far (cut: True)."""
    parsed = urlparse(url)
    connection = http.client.HTTPConnection(
        parsed.hostname, parsed.port or 80, timeout=max(0.1, min(timeout, deadline - time.perf_counter()))
    )
    body = {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    if model:
        body["model"] = model
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    start = time.perf_counter()
    ttft, pieces = None, []
    try:
        connection.request("POST", "/v1/chat/completions", json.dumps(body), headers)
        response = connection.getresponse()
        if response.status != 200:
            response.read()
            return {"status": response.status, "latency": time.perf_counter() - start}
        for line in response:
            if time.perf_counter() > deadline:
                return {"status": 200, "ttft": ttft, "text": "".join(pieces), "cut": True}
            line = line.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                return {"status": "stream-error", "latency": time.perf_counter() - start}
            for choice in event.get("choices", []):
                text = (choice.get("delta") or {}).get("content")
                if text:
                    ttft = ttft if ttft is not None else time.perf_counter() - start
                    pieces.append(text)
    except (OSError, http.client.HTTPException) as exc:
        if time.perf_counter() >= deadline:  # the window closed while waiting
            return {"status": 200, "ttft": ttft, "text": "".join(pieces), "cut": True}
        return {"status": type(exc).__name__, "latency": time.perf_counter() - start}
    finally:
        connection.close()
    return {"status": 200, "ttft": ttft, "latency": time.perf_counter() - start, "text": "".join(pieces), "cut": False}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def run(url, clients: int, seconds: float, max_tokens: int, model, api_key, tokenizer, timeout: float) -> dict:
    results, lock = [], threading.Lock()
    end = time.perf_counter() + seconds

    def client(index: int):
        turn = index
        while time.perf_counter() < end:
            result = one_request(url, model, PROMPTS[turn % len(PROMPTS)], max_tokens, api_key, timeout, end)
            turn += clients
            with lock:
                results.append(result)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    streamed = [r for r in results if r["status"] == 200]
    ok = [r for r in streamed if not r["cut"]]
    tokens = sum(len(tokenizer(r["text"], add_special_tokens=False)["input_ids"]) for r in streamed if r["text"])
    errors: dict = {}
    for r in results:
        if r["status"] != 200:
            errors[str(r["status"])] = errors.get(str(r["status"]), 0) + 1
    ttfts = [r["ttft"] for r in streamed if r["ttft"] is not None]
    latencies = [r["latency"] for r in ok]
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(ok),
        "cut": len(streamed) - len(ok),
        "requests_per_s": len(ok) / elapsed,
        "output_tokens": tokens,
        "output_tokens_per_s": tokens / elapsed,
        **{f"ttft_p{q}": percentile(ttfts, q) for q in (50, 95, 99)},
        **{f"latency_p{q}": percentile(latencies, q) for q in (50, 95, 99)},
        "errors": errors,
    }


def row(label: str, r: dict) -> str:
    errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
    return (
        f"| {label} | {r['clients']} | {r['requests']} (+{r['cut']} cut) in {r['seconds']} s "
        f"| {r['requests_per_s']:.2f} "
        f"| {r['output_tokens_per_s']:.1f} | {r['ttft_p50']:.2f} / {r['ttft_p95']:.2f} / {r['ttft_p99']:.2f} "
        f"| {r['latency_p50']:.2f} / {r['latency_p95']:.2f} / {r['latency_p99']:.2f} | {errors} | {r['load']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="The server, without /v1.")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=60.0, help="How long each client count runs.")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--model", help="The `model` to send (default: none, the server's only model).")
    parser.add_argument("--api-key", default=os.environ.get("TUNESMITH_API_KEY"))
    parser.add_argument("--label", default="server", help="The first column of the printed rows.")
    parser.add_argument("--timeout", type=float, default=600.0, help="Client-side timeout per request (s).")
    parser.add_argument("--json", help="Append the results as JSON lines to this file.")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from tunesmith.models.default import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    warm = one_request(args.url, args.model, PROMPTS[0], 4, args.api_key, args.timeout)
    if warm["status"] != 200:
        raise SystemExit(f"serve_load: the warm-up request to {args.url} failed: {warm['status']}")
    print(
        "| server | clients | requests | req/s | output tok/s | TTFT p50/p95/p99 s | latency p50/p95/p99 s "
        "| errors | load avg before -> after |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for clients in args.clients:
        before = os.getloadavg()[0]
        result = run(
            args.url, clients, args.seconds, args.max_tokens, args.model, args.api_key, tokenizer, args.timeout
        )
        result["load"] = f"{before:.2f} -> {os.getloadavg()[0]:.2f}"
        result["label"] = args.label
        print(row(args.label, result), flush=True)
        if args.json:
            with open(args.json, "a") as out:
                out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
