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
    kit = commands.add_parser(
        "kit",
        help="print the emergency kit (the key, and how to restore without the add-on)",
        description="Print the emergency kit. It is both instructions and an age identity file: "
        "'age -d -i kit.txt COPY.tar.age > COPY.tar' opens the add-on's copies.",
    )
    kit.add_argument("--data", type=Path, default=Path("/data"), help="the add-on's data folder (default: /data)")
    for name, verb in (("decrypt", "Decrypt"), ("encrypt", "Encrypt")):
        tool = commands.add_parser(
            name,
            help=f"{verb.lower()} a file with the key of an emergency kit (streams; IN and OUT may be -)",
            description=f"{verb} an age file with the key from an emergency kit, streaming, in constant memory. "
            "OUT appears only when everything was processed and checked.",
        )
        tool.add_argument("source", metavar="IN", help="input file, or - for standard input")
        tool.add_argument("out", metavar="OUT", help="output file, or - for standard output")
        which = tool.add_mutually_exclusive_group(required=True)
        which.add_argument("--kit", type=Path, help="the emergency kit (or any age identity file)")
        which.add_argument("--key", help="the encryption key itself (XXXX-XXXX-...)")
    verify = commands.add_parser(
        "verify",
        help="prove that a downloaded copy (.tar.age or .tar) can be restored, without restoring it",
        description="Run a restore drill on a copy: open the age envelope (if any), then open every part of "
        "the backup with the key and read it to the end, without writing anything to disk. Prints what "
        "the backup holds and any problem. Exit status: 0 restorable, 1 not restorable, 2 usage error.",
    )
    verify.add_argument("file", metavar="FILE", help="the copy: a .tar.age file or a plain .tar backup")
    key_source = verify.add_mutually_exclusive_group(required=True)
    key_source.add_argument("--kit", type=Path, help="the emergency kit (or any age identity file)")
    key_source.add_argument("--key", help="the encryption key itself (XXXX-XXXX-...)")
    relay = commands.add_parser(
        "relay-stdin",
        help="pass the container's standard input to the service (the container's main command)",
        description="Copy each line of standard input (what hassio.addon_stdin sends) into the FIFO the "
        "service reads commands from. Never exits on its own: the container stops when it does.",
    )
    relay.add_argument("--fifo", type=Path, default=None, help="the FIFO (default: /run/backup_321/commands)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        from .service import run_service

        return asyncio.run(run_service())
    if args.command in ("kit", "decrypt", "encrypt"):
        return _tool(args)
    if args.command == "relay-stdin":
        from .stdin_relay import COMMANDS_FIFO
        from .stdin_relay import main as relay_main

        return relay_main(args.fifo or COMMANDS_FIFO)
    if args.command == "verify":
        from .verify import run_verify_command

        return run_verify_command(args.file, kit=args.kit, key=args.key)
    from .demo import run_demo

    code: int = asyncio.run(run_demo(args.dir, port=args.port, once=args.once))
    return code


def _tool(args: argparse.Namespace) -> int:
    from . import tools

    try:
        if args.command == "kit":
            sys.stdout.write(tools.print_kit(args.data))
        elif args.command == "decrypt":
            asyncio.run(tools.decrypt_file(args.source, args.out, kit=args.kit, key=args.key))
        else:
            asyncio.run(tools.encrypt_file(args.source, args.out, kit=args.kit, key=args.key))
    except tools.ToolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
