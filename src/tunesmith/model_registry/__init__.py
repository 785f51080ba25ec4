"""The model registry on MLflow: named versions of outputs and exports, with lineage, aliases, rollback.

    tunesmith registry register out/demo_merged --name veltrano     # version 1, 2, ... of `veltrano`
    tunesmith registry alias veltrano 2 champion
    tunesmith serve --model registry:veltrano@champion               # or registry:veltrano:2
    tunesmith registry rollback veltrano                             # champion back to what it was

`reference` parses `registry:NAME@ALIAS` / `NAME:VERSION`; `lineage` reads what a finished folder
records (base model, stage, method, data fingerprints, config hash, metrics) and hashes its files;
`store` is the MLflow store itself (`Registry`: register, alias, rollback, version lookup, and
`resolve`, which re-hashes a version's files before handing back its folder); `resolve` turns a
model reference of serve/chat/eval into a verified local folder. The commands live in
`tunesmith.commands.registry`. MLflow is imported only when a `Registry` is made.
"""

from tunesmith.model_registry.reference import PREFIX, parse_ref
from tunesmith.model_registry.resolve import resolve_reference
from tunesmith.model_registry.store import Registry

__all__ = ["PREFIX", "Registry", "parse_ref", "resolve_reference"]
