"""The ``dicom-deid`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    from .server import serve

    workers = args.workers or serve.default_workers()
    print(f"local Cloud Healthcare API on http://{args.host}:{args.port}/v1/ "
          f"(data in {args.data_dir}, {workers} worker(s))", flush=True)
    serve.run(args.host, args.port, Path(args.data_dir), args.max_body_mb * 1024 * 1024,
              workers, args.log_level)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dicom-deid", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the local Cloud Healthcare API server")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (loopback by default)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--data-dir", default="./data/healthcare",
                       help="where stores, instances and the index live")
    serve.add_argument("--max-body-mb", type=int, default=4096,
                       help="largest request body accepted (413 above it)")
    serve.add_argument("--workers", type=int, default=0,
                       help="worker processes (default: one per core, at most 4)")
    serve.add_argument("--log-level", default="warning",
                       choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(func=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
