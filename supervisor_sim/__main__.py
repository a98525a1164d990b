"""Command line: ``python -m supervisor_sim --port P --dir D --token T``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from aiohttp import web

from .app import SupervisorSim
from .config import DEFAULT_TIME_ZONE, SimConfig
from .faults import DEFAULT_STAGE_DELAY, Faults

MIB = 1 << 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line options."""
    parser = argparse.ArgumentParser(
        prog="python -m supervisor_sim",
        description="Simulated Home Assistant Supervisor (v1 API subset, real backup archives).",
    )
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument("--dir", type=Path, required=True, help="data directory (created if missing)")
    parser.add_argument("--token", required=True, help="the add-on's SUPERVISOR_TOKEN")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--payload-mib",
        type=int,
        default=0,
        metavar="N",
        help="add N MiB of incompressible data to the share part of every backup",
    )
    parser.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="NAME",
        help="a backup mount (directory DIR/mounts/NAME); repeatable",
    )
    parser.add_argument(
        "--stage-delay",
        type=float,
        default=DEFAULT_STAGE_DELAY,
        metavar="S",
        help=f"seconds each backup job stage lasts (default {DEFAULT_STAGE_DELAY})",
    )
    parser.add_argument(
        "--time-zone",
        default=DEFAULT_TIME_ZONE,
        metavar="TZ",
        help=f"Home Assistant's time zone in GET /core/api/config (default {DEFAULT_TIME_ZONE})",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    args = parser.parse_args(argv)
    if args.payload_mib < 0:
        parser.error("--payload-mib must be >= 0")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the simulator until SIGINT/SIGTERM."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = SimConfig(
        root=args.dir,
        token=args.token,
        payload_bytes=args.payload_mib * MIB,
        mounts=list(args.mount),
        time_zone=args.time_zone,
        faults=Faults(stage_delay=args.stage_delay),
    )
    sim = SupervisorSim(config)
    web.run_app(
        sim.app,
        host=args.host,
        port=args.port,
        print=lambda _msg: print(f"supervisor_sim listening on http://{args.host}:{args.port}", flush=True),
        access_log=None,
        shutdown_timeout=5,
    )


if __name__ == "__main__":
    main()
