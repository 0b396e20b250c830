"""`scream deploy push | rollback | status | pull`: models to Pis and labelled clips back, over
SSH, registered with the `scream` command through the `scream.commands` entry point group (pyproject.toml)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edge.cli import EXIT_OK, EXIT_SOME_FAILED
from edge.errors import ScreamError


def cmd_deploy(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from deploy import remote

    targets = [
        remote.Target(
            host=host,
            port=args.port,
            identity=args.identity,
            known_hosts=args.known_hosts,
            root=args.root,
            remote_scream=args.remote_scream,
            systemctl=args.systemctl,
            confirm_timeout_s=args.confirm_timeout,
        )
        for host in args.hosts
    ]
    if args.action == "push":
        if not args.model:
            raise ScreamError("deploy push needs --model models/NAME.tflite")
        model = Path(args.model)
        if not model.exists():
            raise ScreamError(f"model {model} does not exist")
        outcomes = remote.run_many(remote.push, targets, model, parallel=args.parallel)
    elif args.action == "pull":
        if not args.out:
            raise ScreamError("deploy pull needs --out DIR (the local folder for the site's labelled clips)")
        from deploy.pull import pull

        # One host at a time: they share the output folder's manifest.
        outcomes = [pull(t, Path(args.out), config=args.remote_config) for t in targets]
    elif args.action == "rollback":
        outcomes = remote.run_many(remote.rollback, targets, parallel=args.parallel)
    else:
        outcomes = remote.run_many(remote.status, targets, parallel=args.parallel)
    if args.json:
        print(json.dumps([asdict(o) for o in outcomes], indent=2))
    else:
        print(remote.summary_table(outcomes))
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_SOME_FAILED


def register(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add `deploy` to `scream`'s subparsers."""
    deploy = sub.add_parser(
        "deploy",
        help="push a model to Pis over SSH, roll back, show their status, or pull their labelled clips",
        formatter_class=formatter,
        description="Over OpenSSH with keys and strict host key checking. Several hosts run in parallel; one "
        "bad host never stops the others; a summary table ends the run.",
        epilog="examples:\n  scream deploy push pi@hall.local pi@carpark.local --model models/scream-v5.tflite\n"
        "  scream deploy rollback pi@hall.local\n"
        "  scream deploy pull pi@hall.local --out site-data/hall   # clips labelled in scream review\n"
        "  scream deploy status pi@hall.local --json\n\n"
        "exit status: 0 every host succeeded, 1 some failed (see the table), 2 fatal",
    )
    deploy.add_argument("action", choices=("push", "rollback", "status", "pull"))
    deploy.add_argument("hosts", nargs="+", help="[user@]host as ssh takes it")
    deploy.add_argument("--model", help="with push: the .tflite (its .json sidecar goes along)")
    deploy.add_argument("--out", help="with pull: local folder for the labelled clips and their manifest.tsv")
    deploy.add_argument(
        "--remote-config", help="with pull: the device's config file (default: /etc/scream-detector/config.toml)"
    )
    deploy.add_argument("--port", type=int)
    deploy.add_argument("--identity", help="private key file (default: ssh's own choice)")
    deploy.add_argument("--known-hosts", help="known_hosts file (default: ssh's own)")
    deploy.add_argument("--root", default="", help="prefix for every device path (for tests and staging)")
    deploy.add_argument("--remote-scream", default="/opt/scream-detector/venv/bin/scream")
    deploy.add_argument("--systemctl", default="sudo systemctl", help="how to call systemctl on the device")
    deploy.add_argument("--parallel", type=int, default=4, help="hosts at once")
    deploy.add_argument("--confirm-timeout", type=float, default=30.0, help="seconds to wait for the new sha256")
    deploy.add_argument("--json", action="store_true")
    deploy.set_defaults(func=cmd_deploy)
