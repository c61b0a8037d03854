"""Command line: ``vigil-detector serve``, ``check``, ``slo`` and ``verify``.

argv -> config -> app (or one verification, whose verdict is the exit code). The modules
that compile numba kernels are imported only by the commands that need them, after
logging is set up, so a start says what it is compiling (``load_kernels``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry

from detector.config import TOKEN_ENV, config_schema, load_config, read_bearer_token
from detector.errors import ConfigError, UpstreamError
from detector.fleet import cores, layout, supervisor
from detector.fleet.partition import Partition
from servicekit import cli, durations, exposure, telemetry, tls

if TYPE_CHECKING:
    from detector.verify import verdict

log = logging.getLogger("detector")

DEFAULT_LISTEN = "127.0.0.1:9420"

DESCRIPTION = """\
Vigil's detector: receives Prometheus remote-write, learns what is normal for every series,
and sends an alert to Alertmanager when a series leaves its band. It also serves a console
at /, the series API, and deployment verification."""

EPILOG = """\
examples:
  vigil-detector serve --config detector.yaml --alertmanager http://alertmanager:9093
  vigil-detector serve --listen 0.0.0.0:9420 --state-dir /var/lib/vigil \\
      --prometheus http://prometheus:9090
  vigil-detector check detector.yaml             exit 0: valid, 1: problems, 2: usage
  vigil-detector schema > detector.schema.json   for editors (yaml-language-server)
  vigil-detector verify --prometheus http://prometheus:9090 --selector 'job="shop"' \\
      --observe 15m
  vigil-detector slo generate slos.yaml --out rules.yaml

Durations take seconds or Prometheus syntax (90s, 15m, 1h30m, 7d).
Documentation: README.md and docs/ (docs/troubleshooting.md when something is off)."""

SERVE_DESCRIPTION = """\
Listen for remote-write (POST /api/v1/write), score every sample, and alert. The config
is read again on SIGHUP or POST /-/reload: a bad one is refused (every problem logged) and
the running one kept; series whose detector did not change keep what they learned. Logs
one line when ready, with the address, what was loaded and the time it took."""

SERVE_EPILOG = """\
examples:
  vigil-detector serve --config detector.yaml --alertmanager http://am-0:9093 \\
      --alertmanager http://am-1:9093 --state-dir /var/lib/vigil
  kill -HUP "$(pidof vigil-detector)"            read the config again
  curl -X POST -H "Authorization: Bearer $TOKEN" http://127.0.0.1:9420/-/reload"""

VERIFY_DESCRIPTION = """\
Did a deployment make these queries worse? Compares the window after a change with the
one before (or a canary with its baseline) and prints a verdict per query: material,
statistically significant, and anomalous to Vigil's detector. Exit 0 pass, 1 fail,
2 inconclusive."""

VERIFY_EPILOG = """\
examples:
  vigil-detector verify --prometheus http://prometheus:9090 --selector 'job="shop"'
  vigil-detector verify --prometheus http://prometheus:9090 \\
      --query 'errors=sum(rate(http_requests_total{code=~"5.."}[1m]))' \\
      --change-time 2026-12-07T14:00:00Z --baseline 1h --observe 15m"""

# The modules whose numba kernels compile at import, in the order serve loads them: a
# fresh NUMBA_CACHE_DIR takes seconds per group, so each is logged with its time.
KERNEL_GROUPS: tuple[tuple[str, str], ...] = (
    ("remote-write wire format", "detector.remote_write._wire"),
    ("series index", "detector.series._index"),
    ("request routing", "detector.pipeline._route"),
    ("request split", "detector.remote_write._split"),
    ("series tracking", "detector.pipeline._sample_rules"),
    ("alert lifecycle", "detector.alerting._state_kernel"),
    ("tail probabilities", "detector.detectors._kernels.tail"),
    ("calibration", "detector.detectors._kernels.calibration"),
    ("robust detector", "detector.detectors._kernels.robust"),
    ("ensemble detector", "detector.detectors._kernels.ensemble"),
    ("spot detector", "detector.detectors._kernels.spot"),
)


def load_kernels(
    *,
    importer: Callable[[str], ModuleType] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Import every kernel group, logging each with the time it took; the total seconds.

    A group already imported costs nothing and is still logged, so the lines always
    account for every group.
    """
    import importlib

    do_import = importer or importlib.import_module
    log.info(
        "loading numba kernels: %d groups (compiled on the first start, then read "
        "from NUMBA_CACHE_DIR)",
        len(KERNEL_GROUPS),
    )
    start = clock()
    for index, (what, module) in enumerate(KERNEL_GROUPS, 1):
        begin = clock()
        do_import(module)
        log.info(
            "numba kernels %d/%d ready: %s (%.2f s)",
            index,
            len(KERNEL_GROUPS),
            what,
            clock() - begin,
        )
    total = clock() - start
    log.info("numba kernels loaded in %.2f s", total)
    return total


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--listen {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]") or "0.0.0.0", int(port)


def parse_duration(text: str, flag: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h30m``, ``7d`` -> seconds (Prometheus syntax)."""
    try:
        value = durations.parse_duration(text)
    except durations.DurationError as exc:
        raise ConfigError(
            f"{flag} {text!r}: expected a duration like 900, 15m, 1h30m or 1d ({exc})"
        ) from None
    if value <= 0:
        raise ConfigError(f"{flag} {text!r}: must be positive")
    return value


def _add_verify(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    v = cli.command(
        sub,
        "verify",
        help="judge a deployment: pass (0), fail (1) or inconclusive (2)",
        description=VERIFY_DESCRIPTION,
        epilog=VERIFY_EPILOG,
    )
    v.add_argument("--prometheus", required=True, metavar="URL")
    v.add_argument("--spec", type=Path, help="YAML/JSON request (flags override it)")
    v.add_argument(
        "--selector",
        help="label matchers of the changed workload, e.g. "
        'job="shop"; without --query: the standard queries',
    )
    v.add_argument(
        "--query",
        action="append",
        default=[],
        metavar="NAME=PROMQL",
        help="a query to judge (repeatable); higher is worse unless NAME ends in :down or :both",
    )
    v.add_argument("--change-time", help="unix seconds or RFC 3339 (default: now - observe)")
    v.add_argument("--baseline", help="window before the change (default 30m)")
    v.add_argument("--observe", help="window after the change (default 15m)")
    v.add_argument("--skip", help="left out right after the change (default 0)")
    v.add_argument("--step", help="range query step (default 15s)")
    v.add_argument("--canary", help="canary's label matchers (with --baseline-selector)")
    v.add_argument("--baseline-selector", help="stable version's label matchers")
    v.add_argument("--json", action="store_true", help="print the JSON report")


def _verify_request(args: argparse.Namespace) -> verdict.VerifyRequest:
    from detector.verify import prometheus, verdict

    doc: dict[str, object] = {}
    if args.spec is not None:
        doc = prometheus.load_spec(args.spec).model_dump(exclude_unset=True)
    queries = []
    for item in args.query:
        name, sep, query = item.partition("=")
        if not sep or not name or not query:
            raise ConfigError(f"--query {item!r}: expected NAME=PROMQL")
        name, _, way = name.partition(":")
        direction = {"": "up_is_bad", "up": "up_is_bad", "down": "down_is_bad", "both": "both"}.get(
            way
        )
        if direction is None:
            raise ConfigError(f"--query {item!r}: the direction after ':' is up, down or both")
        queries.append({"name": name, "query": query, "direction": direction})
    if queries:
        doc["queries"] = queries
    for key in ("selector", "canary", "baseline_selector", "change_time"):
        if getattr(args, key) is not None:
            doc[key] = getattr(args, key)
    for key, flag in (
        ("baseline", "baseline_s"),
        ("observe", "observe_s"),
        ("skip", "skip_s"),
        ("step", "step_s"),
    ):
        if getattr(args, key) is not None:
            doc[flag] = parse_duration(getattr(args, key), f"--{key}")
    try:
        return verdict.VerifyRequest.model_validate(doc)
    except ValueError as exc:  # pydantic's ValidationError
        raise ConfigError(f"verify: {exc}") from exc


def _verify(args: argparse.Namespace) -> int:
    from detector.verify import prometheus, verdict

    req = _verify_request(args)
    try:
        doc = asyncio.run(prometheus.run(req, prometheus_url=args.prometheus))
    except UpstreamError as exc:  # not Prometheus's API answering: no verdict
        print(f"vigil-detector: {exc}", file=sys.stderr)
        return verdict.EXIT_CODES["inconclusive"]
    sys.stdout.write(json.dumps(doc, indent=2) + "\n" if args.json else verdict.render_text(doc))
    return verdict.EXIT_CODES[doc["verdict"]]


def _check_exposure(token: str | None, *, listen: str, host: str, insecure_no_auth: bool) -> None:
    """Fail closed: no token on a non-loopback address stops the start (ConfigError)
    unless --insecure-no-auth, which is logged as a WARNING."""
    unguarded = (
        []
        if token is not None
        else [
            exposure.Unguarded(
                "POST /api/v1/write, POST /api/v1/verify and POST /-/reload",
                f"auth.bearer_token_file in the config, or {TOKEN_ENV}",
            )
        ]
    )
    verdict = exposure.check(
        listen=listen,
        host=host,
        unguarded=unguarded,
        insecure_no_auth=insecure_no_auth,
        tokens=[(f"the remote-write token (auth.bearer_token_file or {TOKEN_ENV})", token)],
    )
    if verdict.refusal is not None:
        raise ConfigError(verdict.refusal)
    if verdict.warning is not None:
        logging.getLogger("detector").warning("%s", verdict.warning)


def _check(path: Path) -> int:
    """0: valid; 1: problems, every one on stderr as ``file:line: path: message``; 2: no
    such file (a usage error)."""
    if not path.is_file():
        print(f"vigil-detector check: {path}: no such file", file=sys.stderr)
        return 2
    try:
        load_config(path)
    except ConfigError as exc:
        problems = str(exc).splitlines()
        for line in problems:
            print(line, file=sys.stderr)
        print(
            f"vigil-detector check: {len(problems)} problem"
            f"{'' if len(problems) == 1 else 's'} in {path}",
            file=sys.stderr,
        )
        return 1
    print(f"{path}: ok")
    return 0


def _slo(args: argparse.Namespace) -> int:
    from detector import slo

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


def _check_serve_paths(args: argparse.Namespace) -> None:
    """The URLs and folders ``serve`` was given exist in the form it needs."""
    for url in [
        *args.alertmanager,
        *([args.prometheus] if args.prometheus else []),
        *([args.remediator_url] if args.remediator_url else []),
    ]:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{url!r}: expected an http:// or https:// URL")
    if args.runbooks is not None and not args.runbooks.is_dir():
        raise ConfigError(
            f"--runbooks {args.runbooks}: not a folder (give the folder "
            "of <AlertName>.md files, e.g. docs/runbooks)"
        )


def _worker_of(args: argparse.Namespace, workers: int) -> tuple[Partition | None, Path | None]:
    """Which worker this process is (None: the only one) and its state directory."""
    if args.worker_index is None:
        return None, args.state_dir
    if args.fleet_dir is None:
        raise ConfigError("--worker-index needs --fleet-dir (both set by --workers)")
    if not 0 <= args.worker_index < workers:
        raise ConfigError(f"--worker-index {args.worker_index}: not in 0..{workers - 1}")
    state_dir = args.state_dir
    if state_dir is not None:
        state_dir = layout.worker_dir(state_dir, args.worker_index)
        state_dir.mkdir(parents=True, exist_ok=True)
    return Partition(args.worker_index, workers), state_dir


def parse_workers(text: str) -> int:
    """``--workers``: a whole number >= 1, or ``auto`` (the cores this process may use)."""
    if text == "auto":
        return cores.available_cores()
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"--workers {text!r}: expected a whole number >= 1, or auto")
    return int(text)


def _supervise(workers: int, argv: list[str]) -> int:
    """Run ``workers`` copies of this command as workers until stopped (``fleet``)."""
    fleet_dir = Path(tempfile.mkdtemp(prefix="vigil-fleet-"))  # mode 0700: only this user

    def worker_argv(index: int, restarts: int, lifeline: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "detector",
            *argv,
            "--workers",
            str(workers),
            "--worker-index",
            str(index),
            "--fleet-dir",
            str(fleet_dir),
            "--worker-restarts",
            str(restarts),
            "--supervisor-fd",
            str(lifeline),
        ]

    try:
        return asyncio.run(supervisor.Supervisor(workers=workers, argv=worker_argv).run())
    finally:
        shutil.rmtree(fleet_dir, ignore_errors=True)


def new_event_loop(name: str) -> asyncio.AbstractEventLoop:
    """The event loop ``serve`` runs on: uvloop (libuv; docs/ingestion.md has the figures)
    or the standard library's."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def main(argv: list[str] | None = None) -> int:
    timer = cli.StartTimer()
    parser, sub = cli.program("vigil-detector", description=DESCRIPTION, epilog=EPILOG)
    serve = cli.command(
        sub,
        "serve",
        help="receive remote-write and run the detectors",
        description=SERVE_DESCRIPTION,
        epilog=SERVE_EPILOG,
    )
    serve.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML config (default: track every series with the defaults)",
    )
    serve.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"where to listen (default {DEFAULT_LISTEN})",
    )
    serve.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where series state is checkpointed, and restored from at start "
        "(default: none, every start learns afresh)",
    )
    serve.add_argument(
        "--prometheus",
        metavar="URL",
        help="Prometheus to read history from (warm starts of new series) and to link alerts to",
    )
    serve.add_argument(
        "--alertmanager",
        metavar="URL",
        action="append",
        default=[],
        help="Alertmanager to send alerts to (repeat for an HA set)",
    )
    serve.add_argument(
        "--external-url",
        metavar="URL",
        help="how people reach this detector (runbook links); default http://<listen>",
    )
    serve.add_argument(
        "--runbooks",
        type=Path,
        metavar="DIR",
        help="a folder of <AlertName>.md runbooks to serve at /runbooks/ "
        "(docs/runbooks/; the rules' runbook_url point there)",
    )
    serve.add_argument(
        "--remediator-url",
        metavar="URL",
        help="the remediator's console, linked from each anomaly in this "
        "detector's console at / (default: console.remediator_url)",
    )
    serve.add_argument(
        "--log-level",
        default="INFO",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR (default INFO); logs are JSON lines",
    )
    serve.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the event loop implementation (default uvloop)",
    )
    serve.add_argument(
        "--profile-stages",
        action="store_true",
        help="export the CPU time of each ingest stage as "
        "vigil_profile_stage_cpu_seconds_total (bench/ingest.py --profile)",
    )
    serve.add_argument(
        "--workers",
        default="1",
        metavar="N",
        help="worker processes, each with its hash share of the series (the cluster's "
        "hashmod of namespace;pod), all on the one --listen address; 'auto': the cores "
        "this process may use (CPU affinity and cgroup quota). Default 1: one process, "
        "no supervisor (docs/ingestion.md, Workers)",
    )
    # set by the supervisor of --workers N for each worker it starts
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--fleet-dir", type=Path, help=argparse.SUPPRESS)
    serve.add_argument("--worker-restarts", type=int, default=0, help=argparse.SUPPRESS)
    serve.add_argument("--supervisor-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument(
        exposure.INSECURE_FLAG,
        action="store_true",
        help="start without a token on a non-loopback address: anyone who "
        "can reach it may write samples and run verifications (logged as a "
        "WARNING)",
    )
    check = cli.command(
        sub,
        "check",
        help="validate a config file: exit 0 valid, 1 problems "
        "(each as file:line: path: message), 2 usage",
    )
    check.add_argument("config", type=Path, metavar="FILE")
    sub.add_parser(
        "schema",
        help="print the config's JSON Schema (for editors: the yaml-language-server modeline)",
    )
    slos = sub.add_parser("slo", help="SLO specs (Sloth prometheus/v1) -> Prometheus rules")
    slo_sub = slos.add_subparsers(dest="slo_command", required=True)
    generate = slo_sub.add_parser("generate", help="write the recording and alerting rules")
    generate.add_argument("specs", type=Path, nargs="+", metavar="SPEC")
    generate.add_argument("--out", type=Path, metavar="FILE", help="default: stdout")
    slo_check = slo_sub.add_parser("check", help="validate SLO spec files and exit")
    slo_check.add_argument("specs", type=Path, nargs="+", metavar="SPEC")
    _add_verify(sub)
    from detector.backtest import cli as backtest_cli  # loaded only by the CLI

    backtest_cli.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "backtest":
        return backtest_cli.main(args)
    try:
        if args.command == "slo":
            return _slo(args)
        if args.command == "verify":
            return _verify(args)
        if args.command == "check":
            return _check(args.config)
        if args.command == "schema":
            print(json.dumps(config_schema(), indent=2, sort_keys=True, allow_nan=False))
            return 0
        if args.worker_index is not None:
            cores.pin_worker(args.worker_index, parse_workers(args.workers))
            # the supervisor passes SIGHUP on: until the app reloads on it, it must not
            # stop a worker that is still starting
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        telemetry.setup_logging(args.log_level)
        cfg = load_config(args.config)
        workers = parse_workers(args.workers)
        supervising = workers > 1 and args.worker_index is None

        try:
            provider = telemetry.tracer_provider_from_env(os.environ, service_name="vigil-detector")
        except telemetry.TelemetryError as exc:
            raise ConfigError(str(exc)) from exc
        host, port = parse_listen(args.listen)
        _check_serve_paths(args)
        ssl_context = tls.build_server_context(cfg.tls, error=ConfigError)
        scheme = "https" if ssl_context is not None else "http"
        if cfg.outgoing_tls.insecure_skip_verify:
            logging.getLogger("detector").warning(
                "outgoing_tls.insecure_skip_verify: peers' certificates are NOT checked"
            )
        token = read_bearer_token(cfg, os.environ)
        _check_exposure(
            token, listen=args.listen, host=host, insecure_no_auth=args.insecure_no_auth
        )
        if args.state_dir is not None and args.worker_index is None:
            layout.check(args.state_dir, workers)
        if supervising:
            if provider is not None:
                provider.shutdown()
            return _supervise(workers, sys.argv[1:] if argv is None else argv)
        load_kernels()
        from detector.app import build_app, startup_facts
        from detector.fleet import worker as fleet_worker

        partition, state_dir = _worker_of(args, workers)
        metrics = CollectorRegistry()
        app = build_app(
            cfg,
            metrics=metrics,
            token=token,
            state_dir=state_dir,
            prometheus_url=args.prometheus,
            alertmanagers=args.alertmanager,
            external_url=args.external_url or f"{scheme}://{host}:{port}",
            runbooks_dir=args.runbooks,
            remediator_url=args.remediator_url,
            tracer=provider.get_tracer("vigil.detector") if provider else None,
            profile_stages=args.profile_stages,
            config_path=args.config,
            reload_on_sighup=True,
        )
        if partition is not None:
            assert args.fleet_dir is not None
            fleet_worker.install(
                app,
                partition=partition,
                fleet_dir=args.fleet_dir,
                registry=metrics,
                restarts=args.worker_restarts,
            )
    except ConfigError as exc:
        print(f"vigil-detector: {exc}", file=sys.stderr)
        return 2
    url = f"{scheme}://{host}:{port}"

    def on_listening(_banner: str = "") -> None:  # aiohttp's "Running on" moment
        facts = startup_facts(app)
        if partition is not None:
            facts.append(f"worker {partition.index} of {partition.workers}")
        log.info("%s", timer.ready_line(prog="vigil-detector", urls=[url], loaded=facts))

    try:
        if partition is not None:
            assert args.fleet_dir is not None
            fleet_worker.serve(
                app,
                host=host,
                port=port,
                http_path=fleet_worker.http_socket(args.fleet_dir, partition.index),
                ssl_context=ssl_context,
                loop=new_event_loop(args.event_loop),
                on_listening=on_listening,
                lifeline=args.supervisor_fd,
            )
            return 0
        # auto_decompress=False: remote-write bodies are snappy, and a body mislabelled
        # gzip must get our 415, not a decompression error inside aiohttp
        web.run_app(
            app,
            host=host,
            port=port,
            print=on_listening,
            access_log=None,
            handler_cancellation=False,
            auto_decompress=False,
            ssl_context=ssl_context,
            loop=new_event_loop(args.event_loop),
        )
    finally:
        if provider is not None:
            provider.shutdown()  # the spans still batched go out
    return 0


if __name__ == "__main__":
    sys.exit(main())
