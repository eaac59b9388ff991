"""The ``dicom-deid`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    from .server import serve

    workers = args.workers or serve.default_workers()
    if args.inject_errors:
        from .server.app import FAULTS_ENV, parse_faults

        try:
            parse_faults(args.inject_errors)
        except ValueError as exc:
            print(f"dicom-deid serve: {exc}", file=sys.stderr)
            return 2
        os.environ[FAULTS_ENV] = args.inject_errors  # read by every worker's app
    from .engine.inflate import DEFAULT_MAX_INFLATED_MB, LIMIT_ENV
    from .engine.pixels.decode import DECODED_LIMIT_ENV
    from .server import connections
    from .server.workers import BUDGET_ENV

    # Limits reach every worker and every de-identification process (and pydicom's
    # reads in them) through the environment; argparse has checked they are positive.
    if args.max_inflated_mb is None and LIMIT_ENV not in os.environ:
        args.max_inflated_mb = max(1, min(DEFAULT_MAX_INFLATED_MB, args.max_body_mb))
    for env, value in ((LIMIT_ENV, args.max_inflated_mb),
                       (DECODED_LIMIT_ENV, args.max_decoded_mb),
                       (BUDGET_ENV, args.instance_timeout_s),
                       (connections.HEADER_TIMEOUT_ENV, args.header_timeout_s),
                       (connections.IDLE_TIMEOUT_ENV, args.idle_timeout_s),
                       (connections.MAX_CONNECTIONS_ENV, args.max_connections)):
        if value is not None:
            os.environ[env] = str(value)
    print(f"local Cloud Healthcare API on http://{args.host}:{args.port}/v1/ "
          f"(data in {args.data_dir}, {workers} worker(s))", flush=True)
    serve.run(args.host, args.port, Path(args.data_dir), args.max_body_mb * 1024 * 1024,
              workers, args.log_level)
    return 0


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse type: a number of ``kind`` above zero (a limit of 0 would refuse all)."""
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        return value

    return parse


def _deidentify(args: argparse.Namespace) -> int:
    from . import batch
    from .api_schema import ConfigError

    src, dst = Path(args.src), Path(args.dst)
    if not src.is_dir():
        print(f"error: source directory {src} does not exist", file=sys.stderr)
        return 2
    try:
        config = json.loads(Path(args.config).read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the config {args.config}: {exc}", file=sys.stderr)
        return 2
    try:
        report = batch.run(config, src, dst, batch.load_key(args.key_file),
                           workers=args.workers, progress=not args.no_progress,
                           retain_safe_private=args.retain_safe_private)
    except ConfigError as exc:
        print(f"error: invalid config: {exc}", file=sys.stderr)
        return 2
    report_path = Path(args.report or f"{dst.resolve()}.report.json")
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    counts = report["counts"]
    print(f"{counts['input']} files: {counts['written']} de-identified, {counts['failed']} failed"
          f" in {report['seconds']} s; report: {report_path}")
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
    serve.add_argument("--max-inflated-mb", type=_positive(int), default=None,
                       help="largest size a Deflated Explicit VR Little Endian instance may "
                            "inflate to (default: 512, or --max-body-mb if smaller): refused "
                            "at STOW and import above it, and not read if stored before")
    serve.add_argument("--max-decoded-mb", type=_positive(int), default=None,
                       help="largest size compressed pixel data may decode to, per request "
                            "or instance (default: 2048): rendering, transcoding and text "
                            "redaction refuse beyond it")
    serve.add_argument("--instance-timeout-s", type=_positive(float), default=None,
                       help="seconds one instance may take in a de-identification before "
                            "it fails alone with a reason (default: 600)")
    serve.add_argument("--header-timeout-s", type=_positive(float), default=None,
                       help="seconds a request line and headers may take to arrive before "
                            "the connection is closed (default: 30)")
    serve.add_argument("--idle-timeout-s", type=_positive(float), default=None,
                       help="seconds an idle keep-alive connection is kept (default: 600, as "
                            "Google's front ends: the discovery client reuses pooled "
                            "connections without retrying)")
    serve.add_argument("--max-connections", type=_positive(int), default=None,
                       help="open connections per worker; a new one beyond closes the "
                            "longest idle (default: half the open-file limit, at most 1000)")
    serve.add_argument("--workers", type=int, default=0,
                       help="worker processes (default: one per core, at most 4)")
    serve.add_argument("--inject-errors", metavar="CODE/N",
                       help="answer every Nth request of each worker with CODE (429, 500 "
                            "or 503), to test clients' retries; e.g. 503/3")
    serve.add_argument("--log-level", default="warning",
                       choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(func=_serve)
    deid = sub.add_parser(
        "deidentify", help="de-identify a directory tree of DICOM files",
        description="De-identify every file under SRC_DIR into DST_DIR/<study>/<series>/"
                    "<instance>.dcm (new UIDs), with a DeidentifyConfig JSON as used by the "
                    "Cloud Healthcare API. Failures are listed in the report; the exit code "
                    "is non-zero only if the run itself fails.")
    deid.add_argument("--config", required=True, help="DeidentifyConfig JSON file")
    deid.add_argument("src", metavar="SRC_DIR")
    deid.add_argument("dst", metavar="DST_DIR")
    deid.add_argument("--key-file", help="base64 secret keying UIDs and date shifts "
                      "(created if missing; default: $DICOM_DEID_KEY, else a one-off key)")
    deid.add_argument("--report", help="JSON report path (default: DST_DIR.report.json)")
    deid.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    deid.add_argument("--no-progress", action="store_true", help="no progress bar")
    deid.add_argument("--retain-safe-private", action="store_true",
                      help="keep private elements RSNA CTP's dictionary marks safe")
    deid.set_defaults(func=_deidentify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
