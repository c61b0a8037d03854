"""Command line: ``vigil-remediator serve | check | simulate | schema | report | rbac | audit``.
argv -> app."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from aiohttp import web

from remediator import rbac, report, review
from remediator.app import STATE, build_app, build_registry
from remediator.audit.store import AuditLog
from remediator.catalog.loader import load_catalog
from remediator.catalog.schema import playbook_schema
from remediator.cluster.kube import Kube, build_api_client
from remediator.config import WEBHOOK_TOKEN_ENV, Tokens, env_overrides, load_config, read_tokens
from remediator.errors import AuditError, ConfigError, WebhookError
from remediator.simulate import observe_all, parse_alerts, simulate
from servicekit import cli, exposure, telemetry, tls

DEFAULT_LISTEN = "127.0.0.1:9421"

DESCRIPTION = """\
Vigil's remediator: receives Alertmanager's webhook, matches each alert to a playbook,
and runs its steps (Kubernetes actions, silences, waits) behind guards: dry-run by
default, cooldowns, rate limits, freeze windows and approvals. Every decision is audited."""

EPILOG = """\
examples:
  vigil-remediator check playbooks/             exit 0: valid, 1: problems, 2: usage
  vigil-remediator simulate --alert alert.json  what would run, with no side effects
  vigil-remediator serve --playbooks playbooks/ --kubeconfig ~/.kube/config \\
      --alertmanager http://alertmanager:9093 --prometheus http://prometheus:9090
  vigil-remediator schema > playbook.schema.json
  vigil-remediator report --since 30d           which alerts and playbooks need tuning

Durations take seconds or Prometheus syntax (90s, 15m, 1h30m, 7d).
Documentation: docs/remediator.md and docs/playbooks.md."""

SERVE_DESCRIPTION = """\
Listen for Alertmanager's webhook (POST /webhook) and run the matching playbooks. Logs
one line when ready, with the address, the playbooks loaded and the time it took."""

SERVE_EPILOG = """\
examples:
  vigil-remediator serve --config remediator.yaml --playbooks playbooks/ --in-cluster
  curl -X POST -H "Authorization: Bearer $ADMIN_TOKEN" http://127.0.0.1:9421/-/reload"""


def startup_facts(app: web.Application) -> list[str]:
    """What the started app loaded, for the startup line."""
    catalog = app[STATE].catalog
    facts = [cli.plural(len(catalog.entries), "playbook")]
    if catalog.problems:
        facts.append(
            f"{cli.plural(len(catalog.problems), 'playbook problem')} (see the log "
            "and GET /api/v1/playbooks)"
        )
    return facts


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--listen {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _check_exposure(tokens: Tokens, *, listen: str, host: str, insecure_no_auth: bool) -> None:
    """Fail closed: no webhook token on a non-loopback address stops the start
    (ConfigError) unless --insecure-no-auth, which is logged as a WARNING. Without an
    admin token the admin endpoints refuse every request, so they are never unguarded."""
    unguarded = (
        []
        if tokens.webhook is not None
        else [
            exposure.Unguarded(
                "POST /webhook", f"auth.bearer_token_file in the config, or {WEBHOOK_TOKEN_ENV}"
            )
        ]
    )
    verdict = exposure.check(
        listen=listen,
        host=host,
        unguarded=unguarded,
        insecure_no_auth=insecure_no_auth,
        tokens=[("the webhook token", tokens.webhook), ("the admin token", tokens.admin)],
    )
    if verdict.refusal is not None:
        raise ConfigError(verdict.refusal)
    if verdict.warning is not None:
        logging.getLogger("remediator").warning("%s", verdict.warning)


def _check(paths: list[Path]) -> int:
    """0: every playbook is valid; 1: problems (every one, one per line, on stderr);
    2: a path that does not exist (a usage error)."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        for path in missing:
            print(f"vigil-remediator check: {path}: no such file or directory", file=sys.stderr)
        return 2
    catalog = load_catalog(paths, build_registry())
    for problem in catalog.problems:
        print(problem, file=sys.stderr)
    for entry in catalog.entries:
        print(f"{entry.path}: ok ({entry.playbook.name})")
    return 1 if catalog.problems else 0


def _simulate(args: argparse.Namespace) -> int:
    try:
        alerts = parse_alerts(Path(args.alert).read_bytes())
    except (OSError, WebhookError) as exc:
        raise ConfigError(f"--alert {args.alert}: {exc}") from exc
    cfg = load_config(args.config)
    registry = build_registry()
    catalog = load_catalog([args.playbooks], registry)
    for problem in catalog.problems:
        print(problem, file=sys.stderr)
    audit = args.state_dir / "audit.db" if args.state_dir else None
    for flag, url in (("--prometheus", args.prometheus), ("--alertmanager", args.alertmanager)):
        if url is not None and not url.startswith(("http://", "https://")):
            raise ConfigError(f"{flag} {url!r}: expected an http:// or https:// URL")
    seen = asyncio.run(
        observe_all(
            alerts,
            catalog,
            registry,
            cfg,
            prometheus_url=args.prometheus,
            alertmanager_url=args.alertmanager,
            kubeconfig=args.kubeconfig,
            kube_context=args.kube_context,
        )
    )
    reports = [
        simulate(
            a, catalog, registry, cfg, now_ms=int(time.time() * 1000), audit_path=audit, seen=world
        )
        for a, world in zip(alerts, seen, strict=True)
    ]
    print(json.dumps(reports if len(reports) > 1 else reports[0], indent=2))
    return 0


def _flag(name: str, parse: Callable[[str], float], text: str) -> float:
    try:
        return parse(text)
    except ConfigError as exc:
        raise ConfigError(f"{name} {exc}") from exc


def _report(args: argparse.Namespace) -> int:
    since_s = _flag("--since", report.parse_duration, args.since)
    self_resolve_s = _flag(
        "--self-resolve-minutes", review.parse_minutes, args.self_resolve_minutes
    )
    if args.alertmanager is not None and not args.alertmanager.startswith(("http://", "https://")):
        raise ConfigError(
            f"--alertmanager {args.alertmanager}: expected an http:// or https:// URL"
        )
    try:
        done = asyncio.run(
            review.review_cli(
                audit_path=args.audit or args.state_dir / "audit.db",
                now_ms=int(time.time() * 1000),
                alertmanager_url=args.alertmanager,
                since_s=since_s,
                self_resolve_s=self_resolve_s,
            )
        )
    except AuditError as exc:
        print(f"vigil-remediator: {exc}", file=sys.stderr)
        return 1
    print(report.render_markdown(done) if args.format == "markdown" else report.report_json(done))
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    """``audit verify``: 0 and a summary when the chain is intact, 1 and the first broken
    link when not, 2 when the database cannot be read."""
    path = args.db or args.state_dir / "audit.db"
    try:
        with AuditLog.open_readonly(path) as db:
            done = db.verify()
    except AuditError as exc:
        print(f"vigil-remediator: {exc}", file=sys.stderr)
        return 2
    print(done.summary())
    return 0 if done.broken is None else 1


def main(argv: list[str] | None = None) -> int:
    timer = cli.StartTimer()
    parser, sub = cli.program("vigil-remediator", description=DESCRIPTION, epilog=EPILOG)
    serve = cli.command(
        sub,
        "serve",
        help="receive Alertmanager webhooks and run playbooks",
        description=SERVE_DESCRIPTION,
        epilog=SERVE_EPILOG,
    )
    serve.add_argument("--config", type=Path)
    serve.add_argument("--listen", default=DEFAULT_LISTEN)
    serve.add_argument("--playbooks", type=Path, default=Path("playbooks"))
    serve.add_argument("--alertmanager", metavar="URL", help="silences and escalations")
    serve.add_argument("--prometheus", metavar="URL", help="pre-conditions and verification")
    serve.add_argument(
        "--state-dir", type=Path, default=Path("state"), help="audit database (audit.db) lives here"
    )
    serve.add_argument("--kubeconfig", type=Path, help="cluster for Kubernetes actions")
    serve.add_argument("--kube-context", help="context in the kubeconfig")
    serve.add_argument(
        "--in-cluster",
        action="store_true",
        help="use the pod's service account for Kubernetes actions",
    )
    serve.add_argument(
        "--detector-url",
        metavar="URL",
        help="the detector's console, linked from this console at /",
    )
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument(
        exposure.INSECURE_FLAG,
        action="store_true",
        help="start without a webhook token on a non-loopback address: "
        "anyone who can reach it may post alerts (logged as a WARNING)",
    )
    check = sub.add_parser("check", help="validate playbook files and folders")
    check.add_argument("paths", type=Path, nargs="+")
    sim = sub.add_parser("simulate", help="what would happen for an alert (no side effects)")
    sim.add_argument(
        "--alert",
        type=Path,
        required=True,
        help="an alert, a webhook body, or a recorded webhook request (JSON)",
    )
    sim.add_argument("--playbooks", type=Path, default=Path("playbooks"))
    sim.add_argument("--config", type=Path)
    sim.add_argument("--state-dir", type=Path, help="read cooldowns and limits from here")
    sim.add_argument(
        "--prometheus",
        metavar="URL",
        help="evaluate pre-conditions and the error budget (queries only)",
    )
    sim.add_argument(
        "--alertmanager", metavar="URL", help="read the silences that would refuse a run (GET only)"
    )
    sim.add_argument(
        "--kubeconfig",
        type=Path,
        help="resolve targets in this cluster (GET only: nothing is changed)",
    )
    sim.add_argument("--kube-context", help="context in the kubeconfig")
    sub.add_parser("schema", help="print the playbook JSON Schema (for editors)")
    rep = sub.add_parser("report", help="alert-quality review from the audit log (read-only)")
    rep.add_argument("--since", default="30d", help="the window: 30d, 12h, 90m, ...")
    where = rep.add_mutually_exclusive_group()
    where.add_argument("--state-dir", type=Path, default=Path("state"), help="has audit.db")
    where.add_argument("--audit", type=Path, metavar="PATH", help="the audit database")
    rep.add_argument("--alertmanager", metavar="URL", help="count silences (GET /api/v2/silences)")
    rep.add_argument("--format", choices=("markdown", "json"), default="markdown")
    rep.add_argument("--self-resolve-minutes", default="5", help="'resolved by itself' bound")
    rb = sub.add_parser(
        "rbac",
        help="print the least-privilege, least-scope RBAC for the "
        "playbooks: Roles where they act, a ClusterRole only for nodes",
    )
    rb.add_argument("--playbooks", type=Path, default=Path("playbooks"))
    rb.add_argument("--namespace", default="vigil", help="where the remediator runs")
    rb.add_argument("--service-account", default="vigil-remediator")
    rb.add_argument(
        "--namespaces",
        metavar="A,B",
        help="where playbooks without a namespace allow-list may act (minus "
        "their deny lists); required when some playbook has none",
    )
    rb.add_argument(
        "--cluster-wide-evictions",
        action="store_true",
        help="let kubernetes.drain evict pods in every namespace (a "
        "ClusterRole); default: only in --namespaces",
    )
    aud = sub.add_parser("audit", help="check the audit database (read-only)")
    aud_sub = aud.add_subparsers(dest="audit_command", required=True)
    ver = aud_sub.add_parser(
        "verify", help="walk the hash chain of the audit events; exit 1 at the first broken link"
    )
    db_at = ver.add_mutually_exclusive_group()
    db_at.add_argument("--db", type=Path, metavar="PATH", help="the audit database")
    db_at.add_argument("--state-dir", type=Path, default=Path("state"), help="has audit.db")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return _check(args.paths)
        if args.command == "rbac":
            registry = build_registry()
            catalog = load_catalog([args.playbooks], registry)
            for problem in catalog.problems:
                print(problem, file=sys.stderr)
            act_in = rbac.parse_namespaces(args.namespaces)
            objects = rbac.render(
                catalog,
                registry,
                namespace=args.namespace,
                service_account=args.service_account,
                namespaces=act_in,
                cluster_wide_evictions=args.cluster_wide_evictions,
            )
            notes = rbac.notes(
                catalog,
                registry,
                namespaces=act_in,
                cluster_wide_evictions=args.cluster_wide_evictions,
            )
            print("".join(f"# {line}\n" for line in notes), end="")
            print(yaml.safe_dump_all(objects, sort_keys=False), end="")
            return 1 if catalog.problems else 0
        if args.command == "schema":
            print(json.dumps(playbook_schema(build_registry()), indent=2, sort_keys=True))
            return 0
        if args.command == "report":
            return _report(args)
        if args.command == "audit":
            return _audit_verify(args)
        if args.command == "simulate":
            return _simulate(args)
        telemetry.setup_logging(args.log_level)
        cfg = env_overrides(load_config(args.config), os.environ)
        try:
            provider = telemetry.tracer_provider_from_env(
                os.environ, service_name="vigil-remediator"
            )
        except telemetry.TelemetryError as exc:
            raise ConfigError(str(exc)) from exc
        host, port = _listen(args.listen)
        for url in (args.alertmanager, args.prometheus, args.detector_url):
            if url is not None and not url.startswith(("http://", "https://")):
                raise ConfigError(f"{url!r}: expected an http:// or https:// URL")
        kube = None
        if args.kubeconfig is not None or args.in_cluster:
            kubeconfig, context = args.kubeconfig, args.kube_context

            async def kube() -> Kube:
                api = await build_api_client(kubeconfig=kubeconfig, context=context)
                return Kube(api)

        ssl_context = tls.build_server_context(cfg.tls, error=ConfigError)
        # a bad CA file stops here, not at start
        tls.build_client_context(cfg.outgoing_tls, error=ConfigError)
        if cfg.outgoing_tls.insecure_skip_verify:
            logging.getLogger("remediator").warning(
                "outgoing_tls.insecure_skip_verify: peers' certificates are NOT checked"
            )
        tokens = read_tokens(cfg, os.environ)
        _check_exposure(
            tokens, listen=args.listen, host=host, insecure_no_auth=args.insecure_no_auth
        )
        scheme = "https" if ssl_context is not None else "http"
        app = build_app(
            cfg,
            playbook_dirs=[args.playbooks],
            state_dir=args.state_dir,
            kube=kube,
            alertmanager_url=args.alertmanager,
            prometheus_url=args.prometheus,
            token=tokens.webhook,
            admin_token=tokens.admin,
            external_url=f"{scheme}://{host}:{port}",
            detector_url=args.detector_url,
            tracer=provider.get_tracer("vigil.remediator") if provider else None,
            load_config=None
            if args.config is None
            else (lambda: env_overrides(load_config(args.config), os.environ)),
            sighup=True,
        )
    except ConfigError as exc:
        print(f"vigil-remediator: {exc}", file=sys.stderr)
        return 2
    url = f"{scheme}://{host}:{port}"

    def on_listening(_banner: str) -> None:  # aiohttp's "Running on" moment
        logging.getLogger("remediator").info(
            "%s", timer.ready_line(prog="vigil-remediator", urls=[url], loaded=startup_facts(app))
        )

    # until the app's own handler takes over: a SIGHUP while starting (a reload sent a
    # little early) must not stop the process, which is SIGHUP's default
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        web.run_app(
            app, host=host, port=port, print=on_listening, access_log=None, ssl_context=ssl_context
        )
    finally:
        if provider is not None:
            provider.shutdown()  # the spans still batched go out
    return 0


if __name__ == "__main__":
    sys.exit(main())
