"""The evaluation report: `eval_report.html`, one self-contained file (no script, no external file).

Columns are runs (the base model and the fine-tuned one after `tunesmith train`; any number of
outputs with `tunesmith eval --compare A B ...`); sections: every scalar metric side by side with
the change from the first column to the last, bars per MCQ subject and category, consistency per
group, edge-case failure rates and the failing probes, and the worst-scored generation
predictions with their references.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

from tunesmith.errors import ConfigError
from tunesmith.eval.suites import DETAIL_KEYS

# metric key prefix -> section title, in report order
SECTIONS = (
    ("val_", "Held-out data"),
    ("pref_", "Held-out data"),
    ("kto_", "Held-out data"),
    ("rm_", "Held-out data"),
    ("reward_", "Rewards"),
    ("qa_", "QA accuracy (key match)"),
    ("general_", "General ability (forgetting)"),
    ("gen_", "Generation metrics"),
    ("bleu4_char", "Generation metrics"),
    ("mcq_", "Multiple choice"),
    ("consistency_", "Consistency"),
    ("edge_", "Edge cases"),
    ("judge_", "Judge (pairwise, both orders)"),
    ("lm_eval/", "lm-evaluation-harness"),
)
LOWER_IS_BETTER = ("loss", "perplexity", "edge_fail/")
WORST_SHOWN = 10
VERDICTS_SHOWN = 20

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.better{color:#080}.worse{color:#b00}.bar{display:inline-block;height:10px;background:#4a7fd0;margin-right:4px}
.small{color:#666;font-size:90%}pre{white-space:pre-wrap;margin:0;font-family:inherit}"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(key: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _e(value)
    if isinstance(value, int):
        return str(value)
    share = (
        key.endswith(("accuracy", "_match", "agreement", "key_rate"))
        or key.startswith("judge_")
        and key.endswith(("_rate", "_consistency"))
        or "/" in key
        and key.split("/")[0] in ("mcq_subject", "mcq_category", "edge_fail", "qa_accuracy")
    )
    return f"{value:.1%}" if share else f"{value:.4f}"


def _section(key: str) -> str:
    return next((title for prefix, title in SECTIONS if key.startswith(prefix)), "Other")


def _scalars(result: dict) -> dict:
    return {
        k: v
        for k, v in result.items()
        if k not in DETAIL_KEYS
        and isinstance(v, (int, float, str))
        and k not in ("model", "system", "gen_bleu_tokenize")
    }


def metrics_table(runs: list[tuple[str, dict]]) -> str:
    keys: list[str] = []
    for _, result in runs:
        keys += [k for k in _scalars(result) if k not in keys]
    order = [title for _, title in SECTIONS] + ["Other"]
    keys.sort(key=lambda k: order.index(_section(k)))
    head = "".join(f"<th>{_e(name)}</th>" for name, _ in runs) + ("<th>change</th>" if len(runs) > 1 else "")
    lines, current = [f"<table><tr><th>metric</th>{head}</tr>"], None
    for key in keys:
        if _section(key) != current:
            current = _section(key)
            lines.append(f'<tr><th colspan="{len(runs) + 2}">{_e(current)}</th></tr>')
        cells = "".join(f'<td class="num">{_fmt(key, r.get(key))}</td>' for _, r in runs)
        lines.append(f"<tr><td>{_e(key)}</td>{cells}{_change(key, runs) if len(runs) > 1 else ''}</tr>")
    return "\n".join(lines + ["</table>"])


def _change(key: str, runs) -> str:
    first, last = runs[0][1].get(key), runs[-1][1].get(key)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (first, last)) or key.endswith(
        (
            "_total",
            "_rows",
            "_tokens",
            "_seconds",
            "_probes",
            "_groups",
            "_samples",
            "_shots",
            "_prompts",
            "_pairs",
            "_wins",
            "_ties",
            "_losses",
            "_unreadable",
        )
    ):
        return "<td></td>"
    delta = last - first
    good = delta < 0 if any(t in key for t in LOWER_IS_BETTER) else delta > 0
    css = "" if delta == 0 else ("better" if good else "worse")
    return f'<td class="num {css}">{delta:+.4g}</td>'


def bars(runs: list[tuple[str, dict]], prefix: str, title: str) -> str:
    groups = sorted({k[len(prefix) :] for _, r in runs for k in r if k.startswith(prefix)})
    if not groups:
        return ""
    lines = [
        f"<h3>{_e(title)}</h3><table><tr><th>{_e(prefix.rstrip('/').split('_')[-1])}</th>"
        + "".join(f"<th>{_e(n)}</th>" for n, _ in runs)
        + "</tr>"
    ]
    for group in groups:
        cells = []
        for _, r in runs:
            value = r.get(prefix + group)
            width = 0 if value is None else round(150 * value)
            cells.append(f'<td><span class="bar" style="width:{width}px"></span>{_fmt(prefix + "x", value)}</td>')
        lines.append(f"<tr><td>{_e(group)}</td>{''.join(cells)}</tr>")
    return "\n".join(lines + ["</table>"])


def consistency_table(runs) -> str:
    per_run = [(n, {d["id"]: d for d in r.get("consistency_details") or []}) for n, r in runs]
    ids = [i for _, groups in per_run for i in groups]
    if not ids:
        return ""
    lines = [
        "<h3>Agreement per group</h3><table><tr><th>id</th>"
        + "".join(f"<th>{_e(n)}</th>" for n, _ in per_run)
        + "</tr>"
    ]
    for gid in dict.fromkeys(ids):
        cells = "".join(
            f'<td class="num">{_fmt("agreement", g[gid]["agreement"]) if gid in g else "-"}'
            f'<div class="small">{_e(g[gid]["answer"] or "no key") if gid in g else ""}</div></td>'
            for _, g in per_run
        )
        lines.append(f"<tr><td>{_e(gid)}</td>{cells}</tr>")
    return "\n".join(lines + ["</table>"])


def edge_failures(runs) -> str:
    lines = []
    for name, result in runs:
        failing = [d for d in result.get("edge_details") or [] if d["failed"]]
        if result.get("edge_details") is None:
            continue
        lines.append(f"<h3>Failing probes: {_e(name)} ({len(failing)} of {len(result['edge_details'])})</h3>")
        if failing:
            lines.append("<table><tr><th>kind</th><th>failed</th><th>prompt</th><th>reply / error</th></tr>")
            lines += [
                f"<tr><td>{_e(d['kind'])}</td><td>{_e(', '.join(d['failed']))}</td><td><pre>{_e(d['prompt'][:200])}"
                f"</pre></td><td><pre>{_e(d['error'] or (d['reply'] or '')[:300])}</pre></td></tr>"
                for d in failing
            ]
            lines.append("</table>")
    return "\n".join(lines)


def judge_section(runs) -> str:
    lines = []
    for name, result in runs:
        verdicts = result.get("judge_verdicts")
        if not verdicts:
            continue
        lines.append(
            f"<h3>{_e(name)} against {_e(result.get('judge_baseline', 'the baseline'))}, judged by "
            f"{_e(result.get('judge_model', '?'))}</h3><table><tr><th>outcome</th><th>share</th></tr>"
        )
        for outcome in ("win", "tie", "loss"):
            value = result.get(f"judge_{outcome}_rate", 0.0)
            lines.append(
                f'<tr><td>{outcome}</td><td><span class="bar" style="width:{round(150 * value)}px"></span>'
                f"{value:.1%}</td></tr>"
            )
        lines.append("</table>")
        lines.append(
            f'<p class="small">{len(verdicts)} prompts; each pair judged with {_e(name)} as answer A, then as '
            f"answer B; a win or loss needs both orders to agree. First {min(len(verdicts), VERDICTS_SHOWN)} "
            "shown; all in judge.jsonl.</p><table><tr><th>question</th><th>reply</th><th>baseline reply</th>"
            "<th>verdict (reply as A)</th><th>verdict (reply as B)</th><th>outcome</th></tr>"
        )
        lines += [
            f"<tr><td><pre>{_e(d['question'][:300])}</pre></td><td><pre>{_e(d['candidate'][:300])}</pre></td>"
            f"<td><pre>{_e(d['baseline'][:300])}</pre></td><td>{_e(d['candidate_first'])}</td>"
            f"<td>{_e(d['candidate_second'])}</td><td>{_e(d['outcome'])}</td></tr>"
            for d in verdicts[:VERDICTS_SHOWN]
        ]
        lines.append("</table>")
    return "\n".join(lines)


def worst_predictions(runs) -> str:
    name, result = next(((n, r) for n, r in reversed(runs) if r.get("gen_predictions")), (None, None))
    if result is None:
        return ""
    others = [(n, {d["where"]: d for d in r.get("gen_predictions") or []}) for n, r in runs if n != name]
    worst = sorted(result["gen_predictions"], key=lambda d: (d["scores"]["chrf"], d["scores"]["bleu"]))[:WORST_SHOWN]
    head = "".join(f"<th>{_e(n)}</th>" for n, _ in others)
    lines = [
        f"<h3>Lowest chrF: {_e(name)}</h3><table><tr><th>prompt</th><th>reference</th><th>prediction</th>"
        f"<th>chrF / BLEU</th>{head}</tr>"
    ]
    for d in worst:
        other = "".join(
            f"<td><pre>{_e(o[d['where']]['prediction']) if d['where'] in o else '-'}</pre></td>" for _, o in others
        )
        lines.append(
            f"<tr><td><pre>{_e(d['prompt'])}</pre></td><td><pre>{_e(d['reference'])}</pre></td>"
            f'<td><pre>{_e(d["prediction"])}</pre></td><td class="num">{d["scores"]["chrf"]:.1f} / '
            f"{d['scores']['bleu']:.1f}</td>{other}</tr>"
        )
    return "\n".join(lines + ["</table>"])


def render_report(runs: list[tuple[str, dict]], title: str = "tunesmith evaluation") -> str:
    models = "".join(f"<li>{_e(n)}: {_e(r.get('model', '?'))}</li>" for n, r in runs)
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1>",
        f'<p class="small">written {time.strftime("%Y-%m-%d %H:%M")}; runs:</p><ul>{models}</ul>',
        "<h2>Metrics</h2>",
        metrics_table(runs),
        '<p class="small">gen_bleu is sacreBLEU (corpus, standard tokenisation); bleu4_char_llamafactory is '
        "LLaMA-Factory's per-sentence character BLEU-4: not comparable with each other (docs/eval.md).</p>",
    ]
    mcq = bars(runs, "mcq_category/", "Accuracy per category") + bars(runs, "mcq_subject/", "Accuracy per subject")
    if mcq:
        parts += ["<h2>Multiple choice</h2>", mcq]
    if any(r.get("consistency_details") for _, r in runs):
        parts += ["<h2>Consistency</h2>", consistency_table(runs)]
    if any(r.get("edge_details") is not None for _, r in runs):
        parts += ["<h2>Edge cases</h2>", bars(runs, "edge_fail/", "Failure rate per check"), edge_failures(runs)]
    judged = judge_section(runs)
    if judged:
        parts += ["<h2>Judge</h2>", judged]
    worst = worst_predictions(runs)
    if worst:
        parts += ["<h2>Worst predictions</h2>", worst]
    return "\n".join(parts + ["</body></html>"])


def write_report(runs: list[tuple[str, dict]], folder: str | Path, title: str = "tunesmith evaluation") -> Path:
    path = Path(folder) / "eval_report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(runs, title), encoding="utf-8")
    return path


def load_runs(folder: str | Path) -> list[tuple[str, dict]]:
    """The measured runs of an output folder: eval_results.json of `tunesmith train` (base and
    fine-tuned) or eval.json of `tunesmith eval`."""
    folder = Path(folder)
    name = folder.name
    if (folder / "eval_results.json").is_file():
        data = json.loads((folder / "eval_results.json").read_text(encoding="utf-8"))
        if "runs" in data:  # a combined report written by --compare
            return [(n, r) for n, r in data["runs"].items()]
        return [
            (f"{name} ({key})" if key == "base" else name, data[key]) for key in ("base", "fine_tuned") if data.get(key)
        ]
    if (folder / "eval.json").is_file():
        return [(name, json.loads((folder / "eval.json").read_text(encoding="utf-8")))]
    raise ConfigError(f"--compare: `{folder}` has no eval_results.json (tunesmith train) or eval.json (tunesmith eval)")


def compare_runs(folders: list[str], out: str | Path, judge=None) -> Path:
    """One report over several outputs; a base model measured by more than one run is shown once.
    With `judge` (a JudgeConfig), the last run's stored judge replies are judged against the first's."""
    runs: list[tuple[str, dict]] = []
    seen_bases = set()
    for folder in folders:
        for name, result in load_runs(folder):
            if name.endswith("(base)"):
                if result.get("model") in seen_bases:
                    continue
                seen_bases.add(result.get("model"))
            runs.append((name, result))
    names = [n for n, _ in runs]
    runs = [(f"{n} [{i}]" if names.count(n) > 1 else n, r) for i, (n, r) in enumerate(runs)]
    if judge is not None:
        from tunesmith.eval.judge import judge_pairs, load_template, open_judge

        if len(runs) < 2 or not all(r.get("judge_replies") for r in (runs[0][1], runs[-1][1])):
            raise ConfigError(
                "--compare --judge: the first and last outputs must both hold judge replies (measured "
                "with eval.judge.prompts / --judge-prompts)"
            )
        verdicts = judge_pairs(
            open_judge(judge, None, 8),
            runs[-1][1]["judge_replies"],
            runs[0][1]["judge_replies"],
            load_template(judge.template),
        )
        runs[-1] = (runs[-1][0], {**runs[-1][1], **verdicts, "judge_baseline": runs[0][0]})
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "eval_results.json").write_text(json.dumps({"runs": dict(runs)}, indent=2, ensure_ascii=False))
    return write_report(runs, out, "tunesmith evaluation: " + " vs ".join(n for n, _ in runs))
