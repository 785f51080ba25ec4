"""Knowledge fine-tuning vs forgetting: run recipe variants, print one table row each.

    .venv/bin/python bench/forgetting_trials.py                      # every trial below, demo config
    .venv/bin/python bench/forgetting_trials.py --only baseline replay20
    .venv/bin/python bench/forgetting_trials.py --config examples/demo_veltrano.yaml --out out/trials

Each trial is `tunesmith train CONFIG` with its overrides, `eval.compare_base=false` (the base is
measured once, by the first trial run with `--with-base`, or read from OUT/base.json), the domain
QA (`eval.qa`) and the general QA (`forgetting.general_qa`) measured on the trained output. The
table (Markdown, for docs/benchmarks.md) has: trial, overrides, domain accuracy, general QA
accuracy, general perplexity, training wall time, and the machine it ran on. Results are
appended to OUT/trials.jsonl as they finish, so a stopped sweep keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

# --- the trials: name -> overrides of the config (added to the command line)
SELF20_E6 = [
    "forgetting.replay=examples/data/general_replay.jsonl",
    "forgetting.replay_ratio=0.2",
    "forgetting.replay_answers=model",
    "training.epochs=6",
]
TRIALS = {
    "baseline": [],
    "replay20": ["forgetting.replay=examples/data/general_replay.jsonl", "forgetting.replay_ratio=0.2"],
    "replay33": ["forgetting.replay=examples/data/general_replay.jsonl", "forgetting.replay_ratio=0.33"],
    "attention_only": ["lora.target_modules=[q_proj,k_proj,v_proj,o_proj]"],
    "lr5e-4": ["training.learning_rate=5.0e-4"],
    "l2": ["forgetting.l2=0.01"],
    "neftune": ["training.neftune_alpha=5"],
    # the replay prompts answered by the base model itself (forgetting.replay_answers: model); self20 ran
    # first from a file of those answers written by hand-run generation (all 94 replies, cut ones included)
    "self20": [
        "forgetting.replay=examples/data/general_replay.jsonl",
        "forgetting.replay_ratio=0.2",
        "forgetting.replay_answers=model",
    ],
    "self20_e6": [
        "forgetting.replay=examples/data/general_replay.jsonl",
        "forgetting.replay_ratio=0.2",
        "forgetting.replay_answers=model",
        "training.epochs=6",
    ],
    "self20_e6_neftune": [
        "forgetting.replay=examples/data/general_replay.jsonl",
        "forgetting.replay_ratio=0.2",
        "forgetting.replay_answers=model",
        "training.epochs=6",
        "training.neftune_alpha=5",
    ],
    # around the best so far (self20_e6_neftune), for the domain half of the goal
    "self20_e6_nef15": [*SELF20_E6, "training.neftune_alpha=15"],
    "self20_e6_nef10": [*SELF20_E6, "training.neftune_alpha=10"],
    "self20_e6_nef5_drop10": [*SELF20_E6, "training.neftune_alpha=5", "lora.dropout=0.1"],
    "self20_e6_nef5_lr2e-3": [*SELF20_E6, "training.neftune_alpha=5", "training.learning_rate=2.0e-3"],
    # the same within the demo's time: fewer replay rows, or fewer epochs
    "self10_e6_nef5": [*SELF20_E6, "forgetting.replay_ratio=0.1", "training.neftune_alpha=5"],
    "self20_e5_nef5": [*SELF20_E6, "training.epochs=5", "training.neftune_alpha=5"],
    "self10_e6_nef5_r64": [
        *SELF20_E6,
        "forgetting.replay_ratio=0.1",
        "training.neftune_alpha=5",
        "forgetting.replay_max_new_tokens=64",
        "eval.batch_size=32",
    ],
    "self20_e5_nef5_r64": [
        *SELF20_E6,
        "training.epochs=5",
        "training.neftune_alpha=5",
        "forgetting.replay_max_new_tokens=64",
        "eval.batch_size=32",
    ],
    # on top of the demo as shipped (self-replay 20%, NEFTune 5, 5 epochs) without its lora section
    # (--config a copy of it without that section): every weight trained
    "full_lr1e-4": ["method=full", "training.learning_rate=1.0e-4"],
    "full_lr3e-5": ["method=full", "training.learning_rate=3.0e-5"],
    "full_lr1e-4_nef10": ["method=full", "training.learning_rate=1.0e-4", "training.neftune_alpha=10"],
    # on the demo as shipped: a higher learning rate (more facts) with more self-replay (to keep the rest)
    "self33_lr2e-3": ["forgetting.replay_ratio=0.33", "training.learning_rate=2.0e-3"],
    # the recipe without its forgetting defaults (no replay, no NEFTune), for a second fact set
    "plain": ["forgetting.replay=[]", "training.neftune_alpha=null"],
    # reworded copies of each question (data.augment: frames and/or word dropout), on the demo as shipped;
    # 2 copies at 2.5 epochs is the demo's number of steps (about 170)
    "para2_e2.5": [
        "data.augment.question_frames=builtin",
        "data.augment.word_dropout=0.15",
        "data.augment.copies=2",
        "training.epochs=2.5",
    ],
    "para4_e1.25": [
        "data.augment.question_frames=builtin",
        "data.augment.word_dropout=0.15",
        "data.augment.copies=4",
        "training.epochs=1.25",
    ],
    "para2_e5": ["data.augment.question_frames=builtin", "data.augment.word_dropout=0.15", "data.augment.copies=2"],
    # for the 90-row Orrin set (3 phrasings per fact): about the demo's 170 steps, plain or with reworded copies
    "epochs12": ["training.epochs=12"],
    "para2_e6": [
        "data.augment.question_frames=builtin",
        "data.augment.word_dropout=0.15",
        "data.augment.copies=2",
        "training.epochs=6",
    ],
    "replay20_l2": [
        "forgetting.replay=examples/data/general_replay.jsonl",
        "forgetting.replay_ratio=0.2",
        "forgetting.l2=0.01",
    ],
}


def machine() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from tunesmith.runtime.precision import cpu_isa, cpu_model_name

    return f"{cpu_model_name()} ({cpu_isa()})"


def run(cmd: list[str], log: Path) -> float:
    started = time.time()
    with log.open("w") as handle:
        code = subprocess.call(cmd, stdout=handle, stderr=subprocess.STDOUT)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {code}); see {log}")
    return time.time() - started


def measure_base(tunesmith: str, config: str, out: Path) -> dict:
    path = out / "base.json"
    if not path.exists():
        run([tunesmith, "eval", "--model", "default", "--output", str(path), config], out / "base.log")
    return json.loads(path.read_text())


def trial(tunesmith: str, config: str, out: Path, name: str, overrides: list[str]) -> dict:
    target = out / name
    seconds = run(
        [tunesmith, "train", config, f"output_dir={target}", "eval.compare_base=false", *overrides], out / f"{name}.log"
    )
    tuned = json.loads((target / "eval_results.json").read_text())["fine_tuned"]
    return {
        "trial": name,
        "overrides": overrides,
        "domain": [tuned.get("qa_correct"), tuned.get("qa_total")],
        "general_qa": [tuned.get("general_qa_correct"), tuned.get("general_qa_total")],
        "general_perplexity": tuned.get("general_perplexity"),
        "seconds": round(seconds),
    }


def row(result: dict) -> str:
    d, g = result["domain"], result["general_qa"]
    ppl = result["general_perplexity"]
    return (
        f"| {result['trial']} | {' '.join(result['overrides']) or '(the config as is)'} | {d[0]}/{d[1]} | "
        f"{g[0]}/{g[1]} | {'-' if ppl is None else f'{ppl:.3f}'} | {result['seconds']} s |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="examples/demo_veltrano.yaml")
    parser.add_argument("--out", default="out/forgetting_trials")
    parser.add_argument("--only", nargs="*", choices=sorted(TRIALS), help="trials to run (default: all)")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="overrides added to every trial (e.g. training.num_threads=1 to run two sweeps side by side)",
    )
    parser.add_argument("--tunesmith", default=str(Path(sys.executable).parent / "tunesmith"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}", flush=True)
    base = measure_base(args.tunesmith, args.config, out)
    print(
        f"base: domain {base.get('qa_correct')}/{base.get('qa_total')}, general QA "
        f"{base.get('general_qa_correct')}/{base.get('general_qa_total')}, general perplexity "
        f"{base.get('general_perplexity')}",
        flush=True,
    )
    print("| trial | overrides | domain QA | general QA | general perplexity | wall time (train + eval) |")
    print("|---|---|---|---|---|---|", flush=True)
    for name in args.only or list(TRIALS):
        result = trial(args.tunesmith, args.config, out, name, [*TRIALS[name], *args.set])
        with (out / "trials.jsonl").open("a") as handle:
            handle.write(json.dumps({**result, "machine": machine()}) + "\n")
        print(row(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
