"""`tunesmith ui`: the web page (Gradio; `pip install 'tunesmith[ui]'`). See docs/ui.md."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PORT = 7860


def cmd_ui(args) -> int:
    from tunesmith.errors import ConfigError
    from tunesmith.ui.safety import bind_check, parse_auth

    auth = parse_auth(args.auth)
    bind_check(args.host, auth)
    roots = [Path(r) for r in args.root]
    for root in roots:
        if not root.is_dir():
            raise ConfigError(f"ui --root {root}: no such folder")
    try:
        from tunesmith.ui.app import UiContext, launch
    except ImportError as exc:
        raise ConfigError(f"tunesmith ui needs Gradio ({exc}); install it with: pip install 'tunesmith[ui]'") from None
    home = Path(args.home or os.environ.get("TUNESMITH_UI_HOME") or "tunesmith-ui")
    ctx = UiContext(home=home, workdir=Path.cwd(), roots=roots, endpoints=tuple(args.allow_endpoint),
                    key_env=args.endpoint_key_env)  # fmt: skip
    print(f"[tunesmith] ui: http://{args.host}:{args.port} (runs, uploads and configs in {ctx.home})", flush=True)
    launch(ctx, args.host, args.port, auth)
    return 0


def register(verbs) -> None:
    ui = verbs.add_parser(
        "ui",
        help="The web page: data, train, evaluate, chat, export (Gradio).",
        description="Start the web page. It writes YAML configs and runs the same `tunesmith` "
        "commands as processes of their own; runs keep going when the page or this server "
        "restarts. See docs/ui.md.",
    )
    ui.add_argument("--host", default="127.0.0.1", help="Address to listen on (another than loopback needs --auth).")
    ui.add_argument("--port", type=int, default=DEFAULT_PORT)
    ui.add_argument("--auth", metavar="USER:PASSWORD", help="Ask for this user name and password.")
    ui.add_argument(
        "--home",
        help="The UI's own folder: its runs, uploads and configs (default: $TUNESMITH_UI_HOME, else ./tunesmith-ui).",
    )
    ui.add_argument(
        "--root",
        action="append",
        default=[],
        metavar="DIR",
        help="Another folder whose files the page may name (besides the working folder and --home); repeatable.",
    )
    ui.add_argument(
        "--allow-endpoint",
        action="append",
        default=[],
        metavar="URL",
        help="A judge endpoint (OpenAI-compatible, http://HOST:PORT/v1) that configs written in the page may "
        "send prompts to; repeatable. Without it the page refuses endpoint judges (docs/ui.md).",
    )
    ui.add_argument(
        "--endpoint-key-env",
        default="OPENAI_API_KEY",
        metavar="NAME",
        help="The environment variable whose value is sent as the key to an allowed endpoint; a config "
        "written in the page cannot name another.",
    )
    ui.set_defaults(func=cmd_ui)
