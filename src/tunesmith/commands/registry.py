"""`tunesmith registry`: versions of outputs and exports on MLflow's model registry (tunesmith.model_registry).

tunesmith registry register OUT --name N [--description TEXT]
tunesmith registry list [N]
tunesmith registry show N[@ALIAS|:VERSION]
tunesmith registry compare N [VERSION ...]
tunesmith registry alias N VERSION ALIAS
tunesmith registry rollback N [--alias champion]
"""

from __future__ import annotations

import json
import time


def _registry(args):
    from tunesmith.model_registry import Registry

    return Registry(args.store)


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def cmd_register(args) -> int:
    info = _registry(args).register(args.folder, args.name, args.description)
    print(
        json.dumps(info, indent=2, ensure_ascii=False)
        if args.json
        else f"[tunesmith] registered {args.folder} as {info['name']} version {info['version']} "
        f"({info['files']} files, "
        f"sha256 of the list {info['files_sha256'][:12]}); serve it with: tunesmith serve --model "
        f"registry:{info['name']}:{info['version']}"
    )
    return 0


def cmd_list(args) -> int:
    registry = _registry(args)
    rows = [registry.describe(v) for v in registry.versions(args.name)]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print(f"[tunesmith] no registered versions in {registry.uri}")
        return 0
    print(f"{'name':<20} {'ver':>4}  {'aliases':<16} {'created':<16}  {'format':<26} base")
    for r in rows:
        print(
            f"{r['name']:<20} {r['version']:>4}  {','.join(r['aliases']) or '-':<16} {_when(r['created']):<16}  "
            f"{r.get('format', '?'):<26} {r.get('base_model', '?')}"
        )
    return 0


def cmd_show(args) -> int:
    from tunesmith.model_registry import parse_ref

    registry = _registry(args)
    print(json.dumps(registry.describe(registry.version(*parse_ref(args.ref))), indent=2, ensure_ascii=False))
    return 0


def cmd_compare(args) -> int:
    registry = _registry(args)
    rows = (
        [registry.describe(registry.version(args.name, None, v)) for v in args.versions]
        if args.versions
        else [registry.describe(v) for v in registry.versions(args.name)]
    )
    keys = sorted({k for r in rows for k in r["metrics"]})
    if args.json:
        print(json.dumps({r["version"]: r["metrics"] for r in rows}, indent=2))
        return 0
    print(f"{'metric':<32}" + "".join(f"{'v' + r['version']:>12}" for r in rows))
    for key in keys:
        cells = (r["metrics"].get(key) for r in rows)
        print(f"{key:<32}" + "".join(f"{'-' if c is None else f'{c:.4g}':>12}" for c in cells))
    return 0


def cmd_alias(args) -> int:
    _registry(args).alias(args.name, args.version, args.alias)
    print(f"[tunesmith] {args.name}@{args.alias} -> version {args.version}")
    return 0


def cmd_rollback(args) -> int:
    current, previous = _registry(args).rollback(args.name, args.alias)
    print(f"[tunesmith] {args.name}@{args.alias}: version {current} -> version {previous}")
    return 0


def register(verbs) -> None:
    registry = verbs.add_parser(
        "registry",
        help="Versions of outputs and exports on MLflow's model registry: "
        "register, list, show, compare, alias, rollback.",
        description="A local SQLite MLflow store in the tunesmith home by default "
        "($TUNESMITH_HOME or ~/.tunesmith), --store FOLDER_OR_URI for another, any MLflow "
        "server with MLFLOW_TRACKING_URI. serve/chat/eval --model registry:NAME@ALIAS load "
        "a version after checking every file's sha256.",
    )
    sub = registry.add_subparsers(dest="registry_verb", metavar="VERB", required=True)

    def verb(name, func, help):
        parser = sub.add_parser(name, help=help)
        parser.add_argument(
            "--store", help="Registry folder or MLflow URI (default: $MLFLOW_TRACKING_URI, else ~/.tunesmith/registry)."
        )
        parser.add_argument("--json", action="store_true", help="Print JSON.")
        parser.set_defaults(func=func)
        return parser

    reg = verb("register", cmd_register, "Register a finished output or export as the next version of NAME.")
    reg.add_argument("folder", help="What `tunesmith train` or `tunesmith export` wrote.")
    reg.add_argument("--name", required=True, help="The registered model's name.")
    reg.add_argument("--description", help="A note kept with the version.")
    verb("list", cmd_list, "Registered versions (of one name or all).").add_argument("name", nargs="?")
    verb("show", cmd_show, "One version with its lineage and metrics.").add_argument(
        "ref", help="NAME (newest), NAME@ALIAS or NAME:VERSION."
    )
    compare = verb("compare", cmd_compare, "Metrics of versions side by side.")
    compare.add_argument("name")
    compare.add_argument("versions", nargs="*", help="Versions to compare (default: all).")
    alias = verb("alias", cmd_alias, "Point ALIAS (e.g. champion) at VERSION.")
    alias.add_argument("name")
    alias.add_argument("version")
    alias.add_argument("alias")
    rollback = verb("rollback", cmd_rollback, "Point an alias back at the version it pointed to before.")
    rollback.add_argument("name")
    rollback.add_argument("--alias", default="champion")
