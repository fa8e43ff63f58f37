import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_code_location_loads_without_gx_or_torch(home):
    code = ("import sys; from orchestration.definitions import defs; "
            "keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}; "
            "print(sorted(keys)); "
            "assert 'great_expectations' not in sys.modules and 'torch' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for key in ["bronze/fhir_resources", "bronze/dicom_instances", "bronze/vcf_genotypes",
                "bronze/quarantine", "silver/patient", "silver/document",
                "gold/patient_360", "vectors/clinical_chunks"]:
        assert key in out.stdout


def test_assets_have_groups_owners_and_descriptions(home):
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_external:
            continue
        assert node.group_name and node.group_name != "default", key
        assert node.owners, key
        assert node.description, key
    checks = {k.name for k in graph.asset_check_keys}
    assert "great_expectations" in checks
    assert any(name.startswith("unique_silver_patient") for name in checks)


def test_dagster_definitions_validate(home):
    (home / "dagster_home").mkdir(parents=True)  # as `medlake dev` / `make dev` do
    dagster = Path(sys.executable).with_name("dagster")
    out = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
