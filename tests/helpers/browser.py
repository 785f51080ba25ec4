"""The browser tests (UI, eval report): the distribution's Chromium driven by playwright, never a
downloaded browser; without the network flags Chromium keeps trying hosts this machine cannot reach."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("TUNESMITH_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def skip_without_chromium() -> None:
    """Skip the calling test module (at import) when the distribution's Chromium is missing."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(
            f"no Chromium at {CHROMIUM} (scripts/setup.sh installs the distribution's package)", allow_module_level=True
        )
