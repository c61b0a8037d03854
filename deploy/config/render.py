"""The one source of truth in deploy/config/, rendered for the form that runs it.

deploy/config/ states every rule, route and selection once. The cluster form
(deploy/cluster/generate.py) and the one-machine form (deploy/local/, ``make demo``)
read it from there; what differs between them (where the remediator listens, where
secrets live, which detectors receive remote-write) is substituted here, and only that.
Every function is pure: it reads deploy/config/ and returns text or data, and writes
nothing.

API::

    CONFIG_DIR, RULES_DIR, ALERTMANAGER_FILE, REMOTE_WRITE_FILE: Path
    SECRET_FILES: tuple[str, ...]     # file names the Alertmanager config reads secrets from

    rule_files() -> list[Path]
        every rule file of deploy/config/rules/, sorted, absolute
    with_runbook_urls(groups_doc, runbook_base: str) -> dict
        a copy of a rule file's document where every alert also carries
        ``runbook_url: <runbook_base>/<alertname>`` (the rules state the runbook as
        ``runbook: docs/runbooks/<alertname>.md``; the detector serves that folder at
        ``/runbooks/``, so the base is ``<detector URL>/runbooks`` in both forms)
    render_rules(path: Path, *, runbook_base: str) -> str
        that document of one rule file, as YAML
    render_alertmanager(*, remediator_url: str, secrets_dir: Path) -> str
        alertmanager.yml with the vigil-remediator webhook URL set to ``remediator_url``
        and every ``*_file`` secret moved to ``secrets_dir`` (same file names). The
        files need not exist to load the config; Alertmanager reads them when notifying.
    remote_write_relabel() -> list[dict]
        the write_relabel_configs of remote-write.yaml (a fresh copy)
    shard_relabel(shard: int, shards: int) -> list[dict]
        the rules that keep one detector shard's share (hashmod; see remote-write.yaml)
    remote_write(urls: Sequence[str], *, bearer_token_file: Path | None = None) -> list[dict]
        remote_write entries: remote-write.yaml's with each url; with several urls each
        entry keeps its shard's share only (shard_relabel)
    render_prometheus(*, scrape_targets: Mapping[str, Sequence[str]],
                      alertmanagers: Sequence[str], remote_write_urls: Sequence[str],
                      rule_files: Sequence[Path] | None = None,
                      extra_scrape_configs: Sequence[Mapping[str, Any]] = (),
                      scrape_interval: str = "15s", evaluation_interval: str = "15s",
                      external_labels: Mapping[str, str] | None = None,
                      bearer_token_file: Path | None = None) -> str
        a complete prometheus.yml: static scrape jobs (job name -> host:port targets)
        plus any full scrape configs (blackbox probes), the rule files (default: all of
        rules_files()), the Alertmanagers (host:port) and remote_write(remote_write_urls)

Command line (prints to stdout)::

    python -m deploy.config.render alertmanager --remediator-url URL --secrets-dir DIR
    python -m deploy.config.render remote-write URL [URL ...]
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent
RULES_DIR = CONFIG_DIR / "rules"
ALERTMANAGER_FILE = CONFIG_DIR / "alertmanager.yml"
REMOTE_WRITE_FILE = CONFIG_DIR / "remote-write.yaml"

# where alertmanager.yml (the cluster form) expects its secrets, and their names
CLUSTER_SECRETS_DIR = PurePosixPath("/etc/alertmanager/secrets")
SECRET_FILES = ("slack-url", "smtp-password", "pagerduty-routing-key", "vigil-remediator-token")
REMEDIATOR_RECEIVER = "vigil-remediator"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks (templates stay readable); no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    literal = "\n" in value and all(line == line.rstrip() for line in value.splitlines())
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if literal else None)


_Dumper.add_representer(str, _represent_str)


def _dump(doc: Any, *sources: Path) -> str:
    names = ", ".join(p.relative_to(CONFIG_DIR.parent.parent).as_posix() for p in sources)
    return f"# GENERATED from {names} by deploy/config/render.py; do not edit.\n" + yaml.dump(
        doc,
        Dumper=_Dumper,
        sort_keys=False,
        width=100,
        default_flow_style=False,
        allow_unicode=True,
    )


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rule_files() -> list[Path]:
    """Every rule file in deploy/config/rules/, sorted."""
    return sorted(p for p in RULES_DIR.iterdir() if p.suffix in (".yaml", ".yml"))


_all_rule_files = rule_files  # render_prometheus's parameter shadows the name


def with_runbook_urls(doc: Mapping[str, Any], runbook_base: str) -> dict[str, Any]:
    """A copy of a rule file's document whose alerts carry ``runbook_url`` too."""
    out = copy.deepcopy(dict(doc))
    base = runbook_base.rstrip("/")
    for group in out.get("groups") or []:
        for rule in group.get("rules") or []:
            if "alert" in rule:
                annotations = rule.setdefault("annotations", {})
                annotations["runbook_url"] = f"{base}/{rule['alert']}"
    return out


def render_rules(path: Path, *, runbook_base: str) -> str:
    """One rule file of deploy/config/rules/ with every alert's runbook_url set."""
    return _dump(with_runbook_urls(_load(path), runbook_base), path)


# --- Alertmanager ----------------------------------------------------------------------


def _move_secrets(node: Any, secrets_dir: Path, where: str) -> None:
    """Point every ``*_file`` value below ``node`` into ``secrets_dir``."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _move_secrets(item, secrets_dir, f"{where}[{i}]")
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key.endswith("_file") and isinstance(value, str):
            path = PurePosixPath(value)
            if path.parent != CLUSTER_SECRETS_DIR or path.name not in SECRET_FILES:
                raise ValueError(
                    f"{ALERTMANAGER_FILE.name}: {where}.{key}: {value} is not "
                    f"one of the secret files in {CLUSTER_SECRETS_DIR}/"
                )
            node[key] = str(secrets_dir / path.name)
        else:
            _move_secrets(value, secrets_dir, f"{where}.{key}")


def render_alertmanager(*, remediator_url: str, secrets_dir: Path) -> str:
    """alertmanager.yml for another place: the remediator's webhook URL and the directory
    of the secret files change, nothing else. A relative ``secrets_dir`` is taken from
    the current directory (Alertmanager would resolve it against the config file's)."""
    if not remediator_url.startswith(("http://", "https://")):
        raise ValueError(f"remediator_url must be an http(s) URL, not {remediator_url!r}")
    doc = _load(ALERTMANAGER_FILE)
    receivers = {r["name"]: r for r in doc["receivers"]}
    hooks = receivers.get(REMEDIATOR_RECEIVER, {}).get("webhook_configs") or []
    if not hooks:
        raise ValueError(
            f"{ALERTMANAGER_FILE.name}: no webhook_configs in receiver {REMEDIATOR_RECEIVER}"
        )
    for hook in hooks:
        hook["url"] = remediator_url
    _move_secrets(doc["receivers"], Path(secrets_dir).absolute(), "receivers")
    return _dump(doc, ALERTMANAGER_FILE)


# --- remote-write ----------------------------------------------------------------------


def _remote_write_entry() -> dict[str, Any]:
    entries = _load(REMOTE_WRITE_FILE)["remote_write"]
    if len(entries) != 1:
        raise ValueError(
            f"{REMOTE_WRITE_FILE.name}: expected one remote_write entry, found {len(entries)}"
        )
    entry: dict[str, Any] = entries[0]
    return entry


def remote_write_relabel() -> list[dict[str, Any]]:
    """The write_relabel_configs selecting the series Vigil receives (a fresh copy)."""
    return list(_remote_write_entry()["write_relabel_configs"])


def shard_relabel(shard: int, shards: int) -> list[dict[str, Any]]:
    """Keep the series of shard ``shard`` of ``shards``: hashmod of namespace/pod (one
    pod's series on one shard), or of the instance for series without them. The same
    scheme deploy/cluster/generate.py writes for the Prometheus Operator."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
    return [
        {"source_labels": ["namespace", "pod"], "target_label": "__tmp_vigil_key"},
        {
            "source_labels": ["__tmp_vigil_key", "instance"],
            "regex": ";;(.+)",
            "target_label": "__tmp_vigil_key",
        },
        {
            "source_labels": ["__tmp_vigil_key"],
            "modulus": shards,
            "target_label": "__tmp_vigil_shard",
            "action": "hashmod",
        },
        {"source_labels": ["__tmp_vigil_shard"], "regex": str(shard), "action": "keep"},
        {"regex": "__tmp_vigil_(key|shard)", "action": "labeldrop"},
    ]


def remote_write(
    urls: Sequence[str], *, bearer_token_file: Path | None = None
) -> list[dict[str, Any]]:
    """remote_write entries for the detectors at ``urls`` (one: all selected series;
    several: each its hashmod share), named vigil or vigil-0, vigil-1, ..."""
    if isinstance(urls, str) or not urls:
        raise ValueError("urls: give a non-empty list of remote-write URLs")
    source = _remote_write_entry()
    entries = []
    for k, url in enumerate(urls):
        entry = copy.deepcopy(source)
        entry["name"] = "vigil" if len(urls) == 1 else f"vigil-{k}"
        entry["url"] = url
        if len(urls) > 1:
            entry["write_relabel_configs"] += shard_relabel(k, len(urls))
        if bearer_token_file is not None:
            entry["authorization"] = {"type": "Bearer", "credentials_file": str(bearer_token_file)}
        entries.append(entry)
    return entries


# --- Prometheus ------------------------------------------------------------------------


def render_prometheus(
    *,
    scrape_targets: Mapping[str, Sequence[str]],
    alertmanagers: Sequence[str],
    remote_write_urls: Sequence[str],
    rule_files: Sequence[Path] | None = None,
    extra_scrape_configs: Sequence[Mapping[str, Any]] = (),
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
    external_labels: Mapping[str, str] | None = None,
    bearer_token_file: Path | None = None,
) -> str:
    """A prometheus.yml that loads deploy/config's rules and remote-writes its selection."""
    files = _all_rule_files() if rule_files is None else list(rule_files)
    glob: dict[str, Any] = {
        "scrape_interval": scrape_interval,
        "evaluation_interval": evaluation_interval,
    }
    if external_labels:
        glob["external_labels"] = dict(external_labels)
    doc: dict[str, Any] = {
        "global": glob,
        "rule_files": [str(Path(p).absolute()) for p in files],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
        if alertmanagers
        else {},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(targets)}]}
            for job, targets in scrape_targets.items()
        ]
        + [dict(c) for c in extra_scrape_configs],
        "remote_write": remote_write(remote_write_urls, bearer_token_file=bearer_token_file),
    }
    if not doc["alerting"]:
        del doc["alerting"]
    return _dump(doc, REMOTE_WRITE_FILE, RULES_DIR)


# --- command line ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.config.render", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="what", required=True)
    am = sub.add_parser("alertmanager", help="alertmanager.yml for another place")
    am.add_argument("--remediator-url", required=True)
    am.add_argument("--secrets-dir", required=True, type=Path)
    rw = sub.add_parser("remote-write", help="remote_write entries for these detector URLs")
    rw.add_argument("urls", nargs="+")
    args = parser.parse_args(argv)
    if args.what == "alertmanager":
        print(
            render_alertmanager(remediator_url=args.remediator_url, secrets_dir=args.secrets_dir),
            end="",
        )
    else:
        print(_dump({"remote_write": remote_write(args.urls)}, REMOTE_WRITE_FILE), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
