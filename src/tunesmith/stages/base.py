"""What a stage is: a typed record, as `methods.Method` is for a method.

Code outside `stages/` asks the record (`stages.registry.get_stage(cfg.stage)`) and never compares
stage names. Each stage module declares one `STAGE = Stage(...)`; the registry lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.config import TunesmithConfig
from tunesmith.methods.load import load_for_inference
from tunesmith.models.loader import LoadedModel


def no_check(cfg: TunesmithConfig) -> None:
    return None


def load_language_model(cfg: TunesmithConfig, model_ref: str) -> LoadedModel:
    return load_for_inference(model_ref, cfg.model.cache_dir)


def chat_hint(output_dir: Path) -> str:
    return f"chat with: tunesmith chat --model {output_dir}"


@dataclass(frozen=True)
class Stage:
    """One training stage.

    - `name`: the value of `stage:`; `reads`: the data it trains on, in words (for messages and docs);
    - `data_kind`: `chat` or `text` (rows tunesmith tokenises, `data.dataset`), or `rows` (rows its
      trainer tokenises, `data.rows`);
    - `data_options`: the `data.*` keys it supports (`data.options`); any other key set in a config
      is refused before anything loads, naming key and stage;
    - `check(cfg)`: its own pre-flight checks (options, data read and validated), before any model loads;
    - `arguments(cfg, work, device, dtype, has_eval)`: its Trainer/TRL arguments (the pre-flight check
      builds them once, so a bad value fails early);
    - `run(cfg) -> RunResult`: the recipe (setup -> train -> save);
    - `evaluate(cfg, loaded, system) -> dict`: the before/after metrics it knows how to measure on its
      held-out data (data.validation or data.val_split); `load_for_eval(cfg, ref)` loads a model for it;
    - `section`: its config section, if it has options (`dpo:`, `grpo:` ...);
    - `new_task_head`: a phrase naming the new head it puts on the model (methods that cannot train
      one are refused); `generates`: whether its model generates text (eval.qa and
      forgetting.general_eval apply); `replay`: whether forgetting.replay rows can be mixed in;
    - `next_step(output_dir)`: what to do with a finished output, printed after training;
    - `describe_data(cfg, train, val)`: extra lines `tunesmith data check` prints (mtl: rows per task).
    """

    name: str
    reads: str
    data_kind: str  # chat | text (rows tunesmith tokenises: data.dataset) | rows (the trainer tokenises: data.rows)
    data_options: frozenset[str]
    run: Callable
    arguments: Callable
    evaluate: Callable
    check: Callable[[TunesmithConfig], None] = no_check
    load_for_eval: Callable[[TunesmithConfig, str], LoadedModel] = load_language_model
    section: str | None = None
    new_task_head: str | None = None
    generates: bool = True
    replay: bool = False
    next_step: Callable[[Path], str] = chat_hint
    describe_data: Callable | None = None  # (cfg, train, val) -> extra lines for `tunesmith data check`
    why_not: Mapping[str, str] = field(default_factory=dict)  # data option -> why this stage cannot use it
