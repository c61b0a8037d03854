"""The configuration shown in the README is a valid configuration."""

from detector.config import load_config
from tests.conftest import ROOT


def test_readme_configuration_example_loads(tmp_path):
    text = (ROOT / "README.md").read_text()
    block = text.split("### Configuration")[1].split("```yaml")[1].split("```")[0]
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    config = tmp_path / "vigil.yaml"
    config.write_text(block.replace("/etc/vigil/token", str(token)))
    cfg = load_config(config)
    assert [rule.name for rule in cfg.series] == ["api", "everything-else"]
    assert cfg.entities[0].by == ("namespace", "pod")


def test_alerting_doc_configuration_example_loads(tmp_path):
    text = (ROOT / "docs" / "alerting.md").read_text()
    block = text.split("## Configuration")[1].split("```yaml")[1].split("```")[0]
    config = tmp_path / "alerting.yaml"
    config.write_text(block)
    cfg = load_config(config)
    assert [rule.name for rule in cfg.alerts] == ["LatencyAnomaly", "VigilAnomaly"]
    assert cfg.writeback.url is not None and cfg.enrichment.kubernetes.enabled


def test_remediator_doc_playbook_example_is_valid(tmp_path):
    from remediator.app import build_registry
    from remediator.catalog.loader import load_catalog

    text = (ROOT / "docs" / "remediator.md").read_text()
    block = text.split("## Playbook example")[1].split("```yaml")[1].split("```")[0]
    path = tmp_path / "silence-disk-flapping.yaml"
    path.write_text(block)
    catalog = load_catalog([path], build_registry())
    assert catalog.problems == () and len(catalog.entries) == 1
