from pathlib import Path

from medlake.cli import main
from medlake.config import ENV_VARS


def test_env_table_lists_every_variable(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    for name in ENV_VARS:
        assert f"`{name}`" in out


def test_ask_prints_answer_and_resolvable_citations(demo, capsys):
    assert main(["ask", "Which patient has asthma?", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "No language model was used" in out
    assert out.count("→ silver.document v") == 2


def test_generate_then_run_on_an_empty_landing_reports_tables(home, capsys):
    assert main(["run", "--quiet"]) == 0  # nothing landed yet: still a clean run
    out = capsys.readouterr().out
    assert "bronze.fhir_resources" in out and "Quarantined (bronze.quarantine): none" in out


def test_readme_env_table_is_the_one_medlake_env_prints(capsys):
    """The README's table is pasted from `medlake env`: a setting added in config.py
    without re-pasting it fails here, not in an operator's deployment."""
    assert main(["env"]) == 0
    table = capsys.readouterr().out.strip()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert table in readme
