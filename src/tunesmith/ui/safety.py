"""What the web page lets in: who may open it, which paths a user may type, where uploads go.

- The page binds to 127.0.0.1. Any other address needs `--auth USER:PASSWORD` (`bind_check`).
- A path typed in the page must resolve (symlinks followed) inside one of the UI's roots: the
  working directory it was started in, the UI's home folder, and any `--root` given (`PathGuard`).
- An uploaded file is copied into HOME/uploads/ under its own base name, never elsewhere
  (`store_upload`).
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import time
from pathlib import Path

from tunesmith.errors import ConfigError

LOOPBACK_NAMES = ("localhost",)


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not (sep and user and password):
        raise ConfigError("ui --auth: expected USER:PASSWORD (both non-empty), e.g. --auth alice:s3cret")
    return user, password


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_check(host: str, auth: tuple[str, str] | None) -> None:
    if not is_loopback(host) and auth is None:
        raise ConfigError(
            f"ui --host {host}: the page starts trainings and reads files, so an address other than "
            "loopback needs a password: add --auth USER:PASSWORD (or leave out --host for 127.0.0.1)"
        )


class PathGuard:
    """Paths typed into the page: relative ones are taken from the first root; every one must lie
    inside a root once resolved."""

    def __init__(self, roots: list[Path]):
        self.roots = [Path(r).resolve() for r in roots]

    def resolve(self, text: str, what: str, must_exist: bool = True, kind: str | None = None) -> Path:
        """`kind`: 'file' or 'dir' when the path must be one."""
        text = (text or "").strip()
        if not text:
            raise ConfigError(f"{what}: no path given")
        path = (self.roots[0] / Path(text).expanduser()).resolve()
        if not any(path == root or path.is_relative_to(root) for root in self.roots):
            raise ConfigError(
                f"{what}: {text} is outside the folders this page may use "
                f"({', '.join(map(str, self.roots))}); start `tunesmith ui --root DIR` to allow another"
            )
        if must_exist and not path.exists():
            raise ConfigError(f"{what}: {text} does not exist (looked for {path})")
        if must_exist and kind == "file" and not path.is_file():
            raise ConfigError(f"{what}: {text} is not a file")
        if must_exist and kind == "dir" and not path.is_dir():
            raise ConfigError(f"{what}: {text} is not a folder")
        return path

    def model_ref(self, text: str, what: str = "model.name_or_path") -> str:
        """A base model: 'default', a hub id (owner/name that is not a local path), or a local folder
        inside the roots."""
        text = (text or "").strip()
        if text == "default":
            return text
        looks_local = text.startswith((".", "/", "~")) or (self.roots[0] / text).exists()
        if not looks_local and re.fullmatch(r"[\w.-]+/[\w.-]+", text):
            return text
        return str(self.resolve(text, what, kind="dir"))


def store_upload(source: str | Path, uploads: Path) -> Path:
    """Copy an uploaded file (Gradio's temporary copy) into `uploads` under its base name; a name
    already there gets a time stamp, so nothing is overwritten."""
    source = Path(source)
    name = re.sub(r"[^\w.\-]", "_", source.name).lstrip(".") or "upload"
    uploads.mkdir(parents=True, exist_ok=True)
    target = uploads / name
    if target.exists():
        target = uploads / f"{target.stem}-{time.strftime('%Y%m%d-%H%M%S')}{target.suffix}"
    shutil.copyfile(source, target)
    return target
