"""`replicator validate` checks a config's mappings against both live databases and lists every problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from replicator.devstack import ConnectionSettings
from tests.conftest import MariaDatabase, PgDatabase
from tests.support.sides import make_sides

pytestmark = pytest.mark.integration

RULES = [{
    "name": "customer", "source": {"system": "shop", "table": "ps_customer", "key": ["id_customer"]},
    "target": {"system": "erp", "table": "res_partner"}, "identity": "customer", "on_delete": "ignore",
    "fields": {"email": "email", "name": {"concat": ["firstname", "lastname"]}},
}]


def _validate(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replicator.cli", "validate", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)


def test_validate_passes_a_fitting_mapping_and_lists_every_problem_of_a_broken_one(
    devstack: ConnectionSettings, pg_database: PgDatabase, mariadb_database: MariaDatabase, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sides = make_sides(
        devstack, pg_database, mariadb_database, tmp_path, monkeypatch, "v",
        shop_ddl=["CREATE TABLE ps_customer (id_customer INT PRIMARY KEY, firstname VARCHAR(255), "
                  "lastname VARCHAR(255), email VARCHAR(255))"],
        erp_ddl=["CREATE TABLE res_partner (id serial PRIMARY KEY, name varchar, email varchar)"],
        rules=RULES, shop_tables=["ps_customer"], erp_tables=[],
    )
    ok = _validate(sides.config)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 rules valid against both databases" in ok.stdout

    mapping = yaml.safe_load((tmp_path / "mappings.yaml").read_text())
    mapping["rules"][0]["fields"]["phone"] = "phone"  # no such column on either side
    mapping["rules"][0]["fields"]["email"] = {"from": "mail"}  # no such source column
    (tmp_path / "mappings.yaml").write_text(yaml.safe_dump(mapping))
    broken = _validate(sides.config)
    assert broken.returncode == 1
    output = " ".join(broken.stderr.split())
    assert "phone" in output and "mail" in output
    assert "problem(s)" in output
