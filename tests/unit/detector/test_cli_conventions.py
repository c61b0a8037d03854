"""vigil-detector's conventions: --version, help for users, probes under both names, the
startup line's facts, and progress while the numba kernels load."""

import ast
import logging
from pathlib import Path
from types import ModuleType

import pytest

from detector import __main__ as cli_main
from detector.app import startup_facts
from detector.config import AlertRule, DetectorConfig, SeriesRule
from servicekit.version import __version__
from tests.unit.detector.apphelpers import start

ROOT = Path(__file__).resolve().parents[3]


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli_main.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"vigil-detector {__version__}\n"


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"], ["verify", "--help"]])
def test_help_is_written_for_users(capsys, argv):
    with pytest.raises(SystemExit):
        cli_main.main(argv)
    text = capsys.readouterr().out
    assert "examples:" in text and "vigil-detector" in text
    for internal in ("argv ->", "Pure; no I/O", "``"):
        assert internal not in text


async def test_probes_under_both_names(aiohttp_client):
    client, _ = await start(aiohttp_client)
    for path in ("/healthz", "/-/healthy", "/readyz", "/-/ready"):
        assert (await client.get(path)).status == 200, path


async def test_startup_facts_name_rules_and_restored_series(aiohttp_client, tmp_path):
    cfg = DetectorConfig(
        series=(SeriesRule(name="a", match='{job="a"}'), SeriesRule(name="b")),
        alerts=(AlertRule(name="One"),),
    )
    client, rt = await start(
        aiohttp_client, cfg, state_dir=tmp_path, alertmanagers=["http://am:9093"]
    )
    assert rt.checkpoints is not None
    rt.checkpoints.restored = 12
    assert startup_facts(client.app) == [
        "2 series rules",
        "1 alert rule",
        "12 series restored from checkpoint",
        "alerts to 1 Alertmanager",
    ]


def _numba_modules() -> set[str]:
    out = set()
    for path in (ROOT / "detector").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # a module that compiles kernels imports from numba itself (``_kernels._cache``
        # only uses numba's caching module: it compiles nothing)
        if any(isinstance(n, ast.ImportFrom) and n.module == "numba" for n in ast.walk(tree)):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def test_every_kernel_module_is_in_a_logged_group():
    assert {module for _, module in cli_main.KERNEL_GROUPS} == _numba_modules()


def test_loading_kernels_logs_each_group_with_its_time(caplog):
    imported = []
    ticks = iter(float(t) for t in range(100))

    def importer(name: str) -> ModuleType:
        imported.append(name)
        return ModuleType(name)

    with caplog.at_level(logging.INFO, logger="detector"):
        total = cli_main.load_kernels(importer=importer, clock=lambda: next(ticks))
    n = len(cli_main.KERNEL_GROUPS)
    assert imported == [module for _, module in cli_main.KERNEL_GROUPS]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith(f"loading numba kernels: {n} groups")
    assert lines[1] == f"numba kernels 1/{n} ready: remote-write wire format (1.00 s)"
    assert lines[n] == f"numba kernels {n}/{n} ready: spot detector (1.00 s)"
    assert lines[-1] == f"numba kernels loaded in {total:.2f} s"
    assert total == 2 * n + 1  # clock ticks once per call: start, 2 per group, end
