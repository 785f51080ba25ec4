"""The MLflow store of the model registry: register, alias, roll back, look up and resolve versions.

The store is MLflow's tracking server and model registry: by default a SQLite database and an
artifact folder in the tunesmith home ($TUNESMITH_HOME, else ~/.tunesmith; `registry/mlflow.db`,
`registry/artifacts/`), `--store FOLDER_OR_URI` for another, any MLflow server when
MLFLOW_TRACKING_URI is set. Registering logs a copy of the folder as the `model` artifact of one
MLflow run (experiment `tunesmith-registry`) and makes a model version of it, so later changes to
the folder never reach the registered version. The run and the version record the lineage
(`lineage.py`) and the parent version (the newest version of the name when this one was
registered). The file list's sha256 is a tag of the version in the registry database, and every
load (`resolve`) re-hashes the files against it: a registered version is immutable, and a changed
or missing file is refused by name. Aliases keep a history (a registered-model tag), which
`rollback` walks back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path
from urllib.parse import unquote, urlparse

from tunesmith.errors import ConfigError, ModelError
from tunesmith.layout import RUN_MANIFEST
from tunesmith.model_registry.lineage import check_copy, file_hashes, lineage, list_digest
from tunesmith.model_registry.reference import parse_ref

EXPERIMENT = "tunesmith-registry"
HISTORY = "tunesmith.alias_history."  # + alias: JSON list of the versions it pointed to, newest last


def home() -> Path:
    return Path(os.environ.get("TUNESMITH_HOME") or Path.home() / ".tunesmith").expanduser()


def store_location(store: str | None) -> tuple[str, str | None]:
    """(MLflow tracking/registry URI, artifact location for the experiment, None = the server's choice)."""
    if store is None and os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"], None
    if store and "://" in store:
        if store.startswith("sqlite:///"):  # artifacts beside the database, never in the working directory
            return store, (Path(store[len("sqlite:///") :]).resolve().parent / "artifacts").as_uri()
        return store, None
    folder = Path(store).expanduser().resolve() if store else home() / "registry"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


class Registry:
    def __init__(self, store: str | None = None):
        try:
            from mlflow import MlflowClient
        except ImportError as exc:
            raise ConfigError(
                "tunesmith registry needs MLflow: pip install 'tunesmith[registry]' (mlflow-skinny)"
            ) from exc
        self.uri, self.artifacts = store_location(store)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    # --- writing -----------------------------------------------------------------------------------

    def register(self, folder: str | Path, name: str, description: str | None = None) -> dict:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise ConfigError(
                f"registry: name `{name}`: use letters, digits, `.`, `_` and `-` (`@` and `:` start an "
                "alias or a version in a reference)"
            )
        folder = Path(folder).expanduser()
        if not (folder / RUN_MANIFEST).is_file():
            raise ModelError(
                f"{folder}: not a finished tunesmith output or export (no {RUN_MANIFEST}); register "
                "what `tunesmith train` or `tunesmith export` wrote"
            )
        tags, metrics, extra = lineage(folder)
        hashes = file_hashes(folder)
        parent = self._newest(name)
        if parent:
            tags["parent_version"] = str(parent.version)
        tags.update({"files": str(len(hashes)), "files_sha256": list_digest(hashes)})
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else self.client.create_experiment(EXPERIMENT, artifact_location=self.artifacts)
        )
        run = self.client.create_run(experiment_id, run_name=f"{name} from {folder.name}")
        run_id = run.info.run_id
        try:
            for key, value in tags.items():
                self.client.log_param(run_id, key, value[:6000])
            for key, value in metrics.items():
                self.client.log_metric(run_id, key.replace("@", "_at_"), value)
            self.client.log_artifacts(run_id, str(folder), "model")
            self.client.log_dict(run_id, hashes, "files.json")
            for path in extra:
                self.client.log_artifact(run_id, str(path), "lineage")
        except BaseException:  # a half-logged run is marked failed and never becomes a version
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id)
        local = self._local_artifacts(run_id)
        if local is not None:  # the registry's copy is read-only on disk as well
            for path in local.rglob("*"):
                if path.is_file():
                    path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        if not self._exists(name):
            self.client.create_registered_model(name)
        version = self.client.create_model_version(
            name,
            f"runs:/{run_id}/model",
            run_id=run_id,
            tags={f"tunesmith.{k}": v for k, v in tags.items()},
            description=description,
        )
        return self.describe(version)

    def alias(self, name: str, version: str, alias: str) -> None:
        self.version(name, None, str(version))  # refuses a version that does not exist
        self.client.set_registered_model_alias(name, alias, str(version))
        history = self._history(name, alias)
        if not history or history[-1] != str(version):  # versions are kept as strings throughout
            history.append(str(version))
        self.client.set_registered_model_tag(name, HISTORY + alias, json.dumps(history[-100:]))

    def rollback(self, name: str, alias: str = "champion") -> tuple[str, str]:
        """Point `alias` back at the version it pointed to before; returns (from, to)."""
        history = self._history(name, alias)
        if len(history) < 2:
            raise ConfigError(
                f"registry: `{name}@{alias}` has no earlier version to roll back to "
                f"(history: {', '.join(history) or 'none'}); set one with `tunesmith registry alias`"
            )
        current, previous = history.pop(), history[-1]
        self.client.set_registered_model_alias(name, alias, previous)
        self.client.set_registered_model_tag(name, HISTORY + alias, json.dumps(history))
        return current, previous

    # --- reading -----------------------------------------------------------------------------------

    def version(self, name: str, alias: str | None = None, version: str | None = None):
        from mlflow.exceptions import MlflowException

        if not self._exists(name):
            known = ", ".join(m.name for m in self.client.search_registered_models()) or "none"
            raise ConfigError(f"registry {self.uri}: no model named `{name}` (registered: {known})")
        try:
            if alias:
                return self.client.get_model_version_by_alias(name, alias)
            if version:
                return self.client.get_model_version(name, version)
        except MlflowException as exc:
            what = f"alias `{alias}`" if alias else f"version {version}"
            raise ConfigError(f"registry: `{name}` has no {what} ({self._summary(name)})") from exc
        return self._newest(name)

    def versions(self, name: str | None = None) -> list:
        query = f"name='{name}'" if name else ""
        found = self.client.search_model_versions(query)
        return sorted(found, key=lambda v: (v.name, int(v.version)))

    def describe(self, version) -> dict:
        run = self.client.get_run(version.run_id)
        tags = {k[len("tunesmith.") :]: v for k, v in version.tags.items() if k.startswith("tunesmith.")}
        aliases = self.client.get_registered_model(version.name).aliases  # search results leave aliases out
        return {
            "name": version.name,
            "version": str(version.version),
            "aliases": sorted(a for a, v in aliases.items() if str(v) == str(version.version)),
            "created": version.creation_timestamp,
            "description": version.description or "",
            "source": version.source,
            "run_id": version.run_id,
            **tags,
            "metrics": dict(run.data.metrics),
        }

    def resolve(self, ref: str) -> Path:
        """A local folder holding the version's files, each checked against the sha256 registered."""
        name, alias, number = parse_ref(ref)
        version = self.version(name, alias, number)
        local = self._local_artifacts(version.run_id)
        if local is None:  # a remote store: download once into the tunesmith home, verify every time
            target = home() / "registry-cache" / name / str(version.version)
            if not (target / "files.json").is_file():
                # downloaded beside it and renamed in whole: an interrupted download is never taken for the copy
                partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
                shutil.rmtree(partial, ignore_errors=True)
                partial.mkdir(parents=True)
                try:
                    self.client.download_artifacts(version.run_id, "model", str(partial))
                    self.client.download_artifacts(version.run_id, "files.json", str(partial))
                except BaseException:
                    shutil.rmtree(partial, ignore_errors=True)
                    raise
                shutil.rmtree(target, ignore_errors=True)  # what an older tunesmith's interrupted download left
                os.replace(partial, target)
            local = target
        return check_copy(local, version.tags.get("tunesmith.files_sha256"), f"{name} version {version.version}")

    # --- helpers -----------------------------------------------------------------------------------

    def _exists(self, name: str) -> bool:
        return bool(self.client.search_registered_models(f"name='{name}'"))

    def _newest(self, name: str):
        if not self._exists(name):
            return None
        found = self.versions(name)
        return found[-1] if found else None

    def _history(self, name: str, alias: str) -> list[str]:
        return json.loads(self.client.get_registered_model(name).tags.get(HISTORY + alias, "[]"))

    def _summary(self, name: str) -> str:
        model = self.client.get_registered_model(name)
        aliases = ", ".join(f"{a} -> {v}" for a, v in model.aliases.items()) or "no aliases"
        return f"versions {', '.join(str(v.version) for v in self.versions(name))}; {aliases}"

    def _local_artifacts(self, run_id: str) -> Path | None:
        uri = self.client.get_run(run_id).info.artifact_uri
        parsed = urlparse(uri)
        if parsed.scheme == "file" or (parsed.scheme == "" and uri.startswith("/")):
            return Path(unquote(parsed.path))
        return None
