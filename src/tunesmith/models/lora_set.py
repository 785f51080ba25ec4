"""A set of LoRA outputs on one base model: list outputs, load several side by side, switch per request.

Each tunesmith run with a LoRA-family method (lora with rsLoRA/DoRA/PiSSA/LoRA+, qlora) stores
only its adapter, beside a reference to its base. This module treats such outputs as a set:

- `find_outputs(roots)`: every finished output under some folders, with its kind, base and size
  (`tunesmith adapters list`);
- `LoraSet`: the base loaded once and each adapter loaded into it under its own name (PEFT's
  `load_adapter`); `use(NAME)` activates one adapter for one request, `use("base")` runs the base
  with every adapter disabled. Switching is a pointer change, not a reload, so one process can
  answer each request with a different specialist (`tunesmith chat --adapter ...`, `/adapter NAME`).
  A server batches rows of several adapters in one forward instead: `loaded(NAME)` gives an
  adapter's tokenizer and manifest without switching, `adapter_name(NAME)` the PEFT name to pass
  per row, and `activate(NAME)` switches every row where PEFT cannot mix (`mixed_batches`: not DoRA);
- combining several into one weighted adapter is `export.combine` (`tunesmith adapters combine`).

Only LoRA-family adapters share a base and combine this way: virtual-token methods change the input
sequence, bottleneck adapters and LoRA experts are tunesmith modules rather than PEFT adapters, and
DoRA's per-column magnitudes have no weighted sum; each of those is refused with its reason.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import ConfigError, ModelError
from tunesmith.layout import BOTTLENECK_CONFIG, MOE_CONFIG, RUN_MANIFEST, read_manifest, trained_part
from tunesmith.models.loader import (
    LoadedModel,
    load_causal_lm,
    load_tokenizer,
    pick_device,
    pick_dtype,
    resolve_model_path,
)
from tunesmith.models.reward import is_reward_model

BASE = "base"  # the name under which LoraSet runs the base model itself


@dataclass
class OutputInfo:
    name: str
    path: Path
    kind: str  # lora | bottleneck | moe | prompt_tuning | p_tuning | prefix_tuning | full
    method: str
    stage: str
    base: str  # the base model folder the adapter was trained on (resolved)
    rank: int | None
    dora: bool
    size_bytes: int
    metrics: dict
    manifest: dict  # the run's tunesmith.json

    def row(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "kind": self.kind,
            "method": self.method,
            "stage": self.stage,
            "base": self.base,
            "rank": self.rank,
            "dora": self.dora,
            "size_mb": round(self.size_bytes / 2**20, 2),
            "metrics": self.metrics,
        }


CONFIG_FILES = {"bottleneck": BOTTLENECK_CONFIG, "moe": MOE_CONFIG}  # any other adapter kind: PEFT's


def _adapter_config(path: Path, kind: str) -> dict | None:
    return None if kind == "full" else json.loads((path / CONFIG_FILES.get(kind, "adapter_config.json")).read_text())


def describe_output(path: str | Path) -> OutputInfo:
    """What a finished output folder holds; refuses a folder that is not one."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelError(f"{path}: adapter folder not found")
    manifest = read_manifest(path)  # refuses unfinished runs
    kind = trained_part(path) or "full"
    config = _adapter_config(path, kind)
    rank, dora = (config.get("r"), bool(config.get("use_dora"))) if kind == "lora" else (None, False)
    base = config["base_model_name_or_path"] if config else manifest.get("base_model", str(path))
    results = path / "eval_results.json"
    metrics = {}
    if results.is_file():
        after = json.loads(results.read_text()).get("fine_tuned") or {}
        metrics = {
            k: after[k]
            for k in ("qa_accuracy", "val_loss", "pref_accuracy", "pref_margin", "mean_reward")
            if isinstance(after.get(k), (int, float))
        }
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return OutputInfo(
        path.name,
        path.resolve(),
        kind,
        manifest.get("method", "?"),
        manifest.get("stage", "?"),
        base,
        rank,
        dora,
        size,
        metrics,
        manifest,
    )


def find_outputs(roots: list[str]) -> list[OutputInfo]:
    """Finished outputs (folders with a run manifest) in or directly under each root, sorted by
    base then name. Unfinished runs (`NAME.partial`) are not results and are left out."""
    found, seen = [], set()
    for root in map(Path, roots):
        if not root.is_dir():
            raise ConfigError(f"{root}: no such folder")
        candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir())
        for folder in candidates:
            if (folder / RUN_MANIFEST).is_file() and not folder.name.endswith(".partial"):
                if folder.resolve() not in seen:
                    seen.add(folder.resolve())
                    found.append(describe_output(folder))
    return sorted(found, key=lambda a: (a.base, a.name))


def outputs_table(adapters: list[OutputInfo]) -> str:
    if not adapters:
        return "(no finished outputs found)"
    lines = ["| name | kind | method | stage | rank | size | metrics | base |", "|---|---|---|---|---|---|---|---|"]
    for a in adapters:
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in a.metrics.items()) or "-"
        rank = f"{a.rank}{' (DoRA)' if a.dora else ''}" if a.rank else "-"
        lines.append(
            f"| {a.name} | {a.kind} | {a.method} | {a.stage} | {rank} | {a.size_bytes / 2**20:.1f} MB "
            f"| {metrics} | {a.base} |"
        )
    return "\n".join(lines)


def parse_named(specs: list[str], what: str = "--adapter") -> dict[str, str]:
    """`NAME=PATH` or `PATH` (named after the folder) -> {name: path}; names must be unique."""
    named = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec.rstrip("/")).name, spec
        if not name or not path:
            raise ConfigError(f"{what} {spec}: expected NAME=PATH or PATH")
        if name == BASE:
            raise ConfigError(f"{what} {spec}: the name `{BASE}` is reserved for the base model itself")
        if name in named:
            raise ConfigError(f"{what} {spec}: the name `{name}` is given twice; name them NAME=PATH")
        named[name] = path
    return named


def parse_weighted(specs: list[str]) -> list[tuple[str, float]]:
    """`PATH:WEIGHT` or `PATH` (weight 1) -> [(path, weight)]."""
    weighted = []
    for spec in specs:
        path, sep, weight = spec.rpartition(":")
        if not sep:
            path, weight = spec, "1"
        try:
            weighted.append((path, float(weight)))
        except ValueError:
            raise ConfigError(f"--adapter {spec}: the weight after ':' must be a number, e.g. out/a:0.7") from None
    return weighted


def check_switchable(info: OutputInfo) -> None:
    if is_reward_model(info.path):
        raise ModelError(
            f"{info.path}: a reward model (stage rm) scores text; use `tunesmith score`, not a chat adapter"
        )
    if info.kind == "full":
        raise ModelError(
            f"{info.path}: a whole model ({info.method} fine-tuning), not an adapter; load it on its own with --model"
        )
    if info.kind != "lora":
        raise ModelError(
            f"{info.path}: a {info.kind} output; only LoRA-family adapters (lora, rsLoRA, DoRA, PiSSA, "
            "qlora) share one base in memory and switch per request — load this one on its own with --model"
        )


def common_base(infos: list[OutputInfo], cache_dir: str | None) -> str:
    bases = {}
    for info in infos:
        bases.setdefault(
            str(Path(resolve_model_path(info.base, cache_dir)).resolve()) if Path(info.base).exists() else info.base, []
        ).append(info.name)
    if len(bases) > 1:
        listing = "; ".join(f"{base}: {', '.join(names)}" for base, names in bases.items())
        raise ModelError(f"these adapters were trained on different base models and cannot share one: {listing}")
    return next(iter(bases))


class LoraSet:
    """One base model with several named LoRA-family adapters; each request picks one."""

    def __init__(self, adapters: dict[str, str], cache_dir: str | None = None, dtype: str = "auto"):
        from peft import PeftModel

        if not adapters:
            raise ConfigError("no adapters given")
        self.infos = {name: describe_output(path) for name, path in adapters.items()}
        for info in self.infos.values():
            check_switchable(info)
        self.base_path = common_base(list(self.infos.values()), cache_dir)
        device = pick_device()
        base = load_causal_lm(resolve_model_path(self.base_path, cache_dir), pick_dtype(dtype, device))
        names = list(self.infos)
        model = PeftModel.from_pretrained(base, str(self.infos[names[0]].path), adapter_name=names[0])
        for name in names[1:]:
            model.load_adapter(str(self.infos[name].path), adapter_name=name)
        self.model = model.to(device).eval()
        self.tokenizers = {name: load_tokenizer(str(info.path)) for name, info in self.infos.items()}
        self.tokenizers[BASE] = load_tokenizer(resolve_model_path(self.base_path, cache_dir))
        self.manifests = {name: info.manifest for name, info in self.infos.items()}
        self.manifests[BASE] = {}
        self._lock = threading.Lock()  # one request at a time owns the active adapter

    @property
    def names(self) -> list[str]:
        return [BASE, *self.infos]

    # --- adapters added and removed at run time (a server's POST/DELETE /v1/adapters) -------------

    def prepare(self, name: str, path: str, cache_dir: str | None = None) -> tuple[OutputInfo, object]:
        """Check that output PATH can join the set as NAME and read its tokenizer (no model change):
        a finished LoRA-family output, trained on the set's base, under a name not taken."""
        if not name or "/" in name or name != name.strip():
            raise ConfigError(f"adapter name {name!r}: use a non-empty name without '/' or surrounding spaces")
        if name == BASE or name in self.infos:
            raise ConfigError(f"adapter name `{name}` is already taken; loaded: {', '.join(self.names)}")
        info = describe_output(path)
        check_switchable(info)
        base = common_base([info], cache_dir)
        if base != self.base_path:
            raise ModelError(f"{path}: trained on {base}, but this set's base is {self.base_path}")
        if info.dora and self.mixed_batches:
            raise ModelError(
                f"{path}: a DoRA adapter cannot share a mixed batch with the loaded adapters; start the "
                f"server with it among its --adapter options instead"
            )
        return info, load_tokenizer(str(info.path))

    def attach(self, name: str, info: OutputInfo, tokenizer) -> None:
        """Load a prepared adapter into the shared model (call with no forward pass running). Weights that
        fail to load (a damaged file) leave the model as it was and raise ModelError naming the folder."""
        try:
            self.model.load_adapter(str(info.path), adapter_name=name)
        except Exception as exc:
            if name in getattr(self.model, "peft_config", {}):  # injected before the weights failed
                self.model.delete_adapter(name)
            raise ModelError(
                f"{info.path}: the adapter's weights could not be loaded ({type(exc).__name__}: {str(exc)[:300]})"
            ) from exc
        self.model.eval()
        self.infos[name], self.tokenizers[name], self.manifests[name] = info, tokenizer, info.manifest

    def detach(self, name: str) -> None:
        """Remove adapter NAME from the shared model (call with no forward pass running)."""
        if name == BASE:
            raise ConfigError(f"`{BASE}` is the base model itself; it cannot be removed")
        if name not in self.infos:
            raise ConfigError(f"unknown adapter `{name}`; loaded: {', '.join(self.names)}")
        if len(self.infos) == 1:
            raise ConfigError(f"`{name}` is the last adapter of the set; add another before removing it")
        self.model.delete_adapter(name)
        for table in (self.infos, self.tokenizers, self.manifests):
            table.pop(name)

    def loaded(self, name: str) -> LoadedModel:
        """Adapter NAME's tokenizer and manifest with the shared model, without switching anything
        (a server passes the adapter per row: `adapter_name`, PEFT's mixed-adapter batches)."""
        if name not in self.names:
            raise ConfigError(f"unknown adapter `{name}`; loaded: {', '.join(self.names)}")
        return LoadedModel(
            self.model,
            self.tokenizers[name],
            str(self.infos[name].path) if name != BASE else self.base_path,
            self.manifests[name],
        )

    def adapter_name(self, name: str) -> str | None:
        """PEFT's adapter name for NAME; None for the base."""
        return None if name == BASE else name

    @property
    def mixed_batches(self) -> bool:
        """Whether one forward pass can run rows of different adapters (PEFT cannot mix DoRA adapters)."""
        return not any(info.dora for info in self.infos.values())

    def activate(self, name: str | None) -> None:
        """Make NAME (None: the base) the adapter of every row, for a batch of that adapter alone."""
        if name is None:
            self.model.base_model.disable_adapter_layers()
        else:
            self.model.base_model.enable_adapter_layers()
            self.model.set_adapter(name)

    @contextmanager
    def use(self, name: str):
        """Activate adapter NAME (or the base) for the duration of one request; yields a LoadedModel."""
        if name not in self.names:
            raise ConfigError(f"unknown adapter `{name}`; loaded: {', '.join(self.names)}")
        with self._lock:
            loaded = self.loaded(name)
            if name == BASE:
                with self.model.disable_adapter():
                    yield loaded
            else:
                self.model.set_adapter(name)
                yield loaded
