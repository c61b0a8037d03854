"""Command line: ``vigil-detector serve``, ``check`` and ``slo``. argv -> config -> app."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from aiohttp import web

from detector import slo
from detector.app import build_app
from detector.config import load_config, read_bearer_token
from detector.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:9420"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = {"ts": self.formatTime(record), "level": record.levelname,
                 "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return json.dumps(event)


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler])


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--listen {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _slo(args: argparse.Namespace) -> int:
    specs = slo.load_specs(args.specs)
    if args.slo_command == "check":
        for path in args.specs:
            print(f"{path}: ok")
        return 0
    text = slo.render(specs)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vigil-detector", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="receive remote-write and run the detectors")
    serve.add_argument("--config", type=Path, help="YAML config (default: track everything)")
    serve.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT to listen on")
    serve.add_argument("--state-dir", type=Path, help="where series state is checkpointed")
    serve.add_argument("--prometheus", metavar="URL",
                       help="Prometheus to read history from (warm starts of new series) "
                       "and to link alerts to")
    serve.add_argument("--alertmanager", metavar="URL", action="append", default=[],
                       help="Alertmanager to send alerts to (repeat for an HA set)")
    serve.add_argument("--external-url", metavar="URL",
                       help="how people reach this detector (runbook links); default "
                       "http://<listen>")
    serve.add_argument("--runbooks", type=Path, metavar="DIR",
                       help="a folder of <AlertName>.md runbooks to serve at /runbooks/ "
                       "(docs/runbooks/; the rules' runbook_url point there)")
    serve.add_argument("--log-level", default="INFO")
    check = sub.add_parser("check", help="validate a config file and exit")
    check.add_argument("config", type=Path)
    slos = sub.add_parser("slo", help="SLO specs (Sloth prometheus/v1) -> Prometheus rules")
    slo_sub = slos.add_subparsers(dest="slo_command", required=True)
    generate = slo_sub.add_parser("generate", help="write the recording and alerting rules")
    generate.add_argument("specs", type=Path, nargs="+", metavar="SPEC")
    generate.add_argument("--out", type=Path, metavar="FILE", help="default: stdout")
    slo_check = slo_sub.add_parser("check", help="validate SLO spec files and exit")
    slo_check.add_argument("specs", type=Path, nargs="+", metavar="SPEC")
    args = parser.parse_args(argv)
    try:
        if args.command == "slo":
            return _slo(args)
        if args.command == "check":
            load_config(args.config)
            print(f"{args.config}: ok")
            return 0
        _setup_logging(args.log_level)
        cfg = load_config(args.config)
        host, port = parse_listen(args.listen)
        for url in [*args.alertmanager, *([args.prometheus] if args.prometheus else [])]:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"{url!r}: expected an http:// or https:// URL")
        if args.runbooks is not None and not args.runbooks.is_dir():
            raise ConfigError(f"--runbooks {args.runbooks}: not a folder (give the folder "
                              "of <AlertName>.md files, e.g. docs/runbooks)")
        app = build_app(cfg, token=read_bearer_token(cfg), state_dir=args.state_dir,
                        prometheus_url=args.prometheus, alertmanagers=args.alertmanager,
                        external_url=args.external_url or f"http://{host}:{port}",
                        runbooks_dir=args.runbooks)
    except ConfigError as exc:
        print(f"vigil-detector: {exc}", file=sys.stderr)
        return 2
    # auto_decompress=False: remote-write bodies are snappy, and a body mislabelled gzip
    # must get our 415, not a decompression error inside aiohttp
    web.run_app(app, host=host, port=port, print=None, access_log=None,
                handler_cancellation=False, auto_decompress=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
