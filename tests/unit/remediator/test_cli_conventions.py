"""vigil-remediator's conventions: --version, help for users, probes under both names and
the startup line's facts."""

import pytest

from remediator.__main__ import main, startup_facts
from servicekit.version import __version__
from tests.unit.remediator.test_app import start


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"vigil-remediator {__version__}\n"


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"]])
def test_help_is_written_for_users(capsys, argv):
    with pytest.raises(SystemExit):
        main(argv)
    text = capsys.readouterr().out
    assert "examples:" in text and "vigil-remediator" in text
    assert "argv ->" not in text and "``" not in text


async def test_probes_under_both_names_and_startup_facts(aiohttp_client, tmp_path):
    client, _st, _services, _clock = await start(aiohttp_client, tmp_path)
    for path in ("/healthz", "/-/healthy", "/readyz", "/-/ready"):
        assert (await client.get(path)).status == 200, path
    assert startup_facts(client.app) == ["1 playbook"]
