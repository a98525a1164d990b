"""Command line: `python -m backup_addon run|demo`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m backup_addon",
        description="3-2-1 Backup: automatic, proven Home Assistant backups.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "run",
        help="run the add-on service (started by the Supervisor inside the container)",
        description="Run the add-on service. Reads /data/options.json and talks to the Supervisor "
        "with SUPERVISOR_TOKEN; exits non-zero when the options are invalid.",
    )
    demo = commands.add_parser(
        "demo",
        help="run a simulated Supervisor, the add-on and two folder locations on this machine",
        description="Start a simulated Home Assistant Supervisor, the add-on and two folder "
        "locations, with the web interface on http://127.0.0.1:PORT.",
    )
    demo.add_argument("--dir", type=Path, default=Path("demo-data"), help="where the demo keeps its files (default: ./demo-data)")
    demo.add_argument("--port", type=int, default=8099, help="port of the web interface (default: 8099)")
    demo.add_argument(
        "--once",
        action="store_true",
        help="make one backup, print a summary and exit: 0 only if every copy was written and matches",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        from .service import run_service

        return asyncio.run(run_service())
    from .demo import run_demo

    code: int = asyncio.run(run_demo(args.dir, port=args.port, once=args.once))
    return code


if __name__ == "__main__":
    sys.exit(main())
