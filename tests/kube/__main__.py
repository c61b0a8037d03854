"""Run the Kubernetes API double as a process (for tests with several real processes).

``python -m tests.kube --port 8001 --namespace shop --deployment shop/worker:3
[--kubeconfig FILE]`` serves on 127.0.0.1, seeds what it is asked to, writes a kubeconfig
pointing at itself when asked, and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from aiohttp import web

from tests.kube.apiserver import ApiServerDouble

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: double
  cluster: {{server: "http://127.0.0.1:{port}"}}
users:
- name: vigil
  user: {{token: "not-checked-by-the-double"}}
contexts:
- name: double
  context: {{cluster: double, user: vigil}}
current-context: double
"""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--namespace", action="append", default=[])
    parser.add_argument(
        "--deployment",
        action="append",
        default=[],
        help="NAMESPACE/NAME:REPLICAS, seeded with its ReplicaSet and pods",
    )
    parser.add_argument("--kubeconfig", type=Path)
    args = parser.parse_args()
    double = ApiServerDouble()
    for ns in args.namespace:
        double.seed_namespace(ns)
    for spec in args.deployment:
        where, _, replicas = spec.partition(":")
        ns, _, name = where.partition("/")
        double.seed_deployment(name, ns, replicas=int(replicas or 1))
    runner = web.AppRunner(double.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    if args.kubeconfig is not None:
        args.kubeconfig.write_text(KUBECONFIG.format(port=args.port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    double.store.close_watches()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
