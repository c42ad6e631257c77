"""The replicator config for a PrestaShop shop and an Odoo ERP with the shipped mappings
(`mappings/prestashop-odoo/`): which tables each capture reads, and one applier per side.

Used by `replicator demo` and the end-to-end tests; `docs/quickstart.md` shows the same config as YAML.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

MAPPINGS_DIR = Path(__file__).resolve().parents[2] / "mappings" / "prestashop-odoo"

# The tables the mappings read. The order is the initial snapshot's: rows that others refer to come first
# (countries and currencies before customers and orders; locations and product links before quants and moves,
# so that the first stock recomputations already see them).
SHOP_TABLES = (
    "ps_country", "ps_currency", "ps_customer", "ps_address", "ps_orders", "ps_order_detail",
    "ps_order_invoice", "ps_order_payment",
)  # fmt: skip
ERP_TABLES = (
    "stock_location", "product_product", "stock_quant", "stock_move", "stock_picking", "res_partner",
    "sale_order", "sale_order_line",
)  # fmt: skip


def prestashop_odoo_config(
    *,
    kafka_bootstrap: str,
    shop_database: str,
    shop_dsn_env: str = "REPLICATOR_SHOP_DSN",
    erp_dsn_env: str = "REPLICATOR_ERP_DSN",
    shop_source: str = "shop",
    erp_source: str = "erp",
    erp_schema: str = "public",
    mappings: Path = MAPPINGS_DIR,
    server_id: int | None = None,
    heartbeat_interval_s: float = 1.0,
) -> dict[str, Any]:
    """A config document (to dump as YAML). Connection strings come from the named environment variables;
    `shop_source`/`erp_source` are the captures' names, hence topic prefixes."""
    return {
        "kafka": {"bootstrap_servers": kafka_bootstrap},
        "mappings": str(mappings),
        "systems": {
            "shop": {"namespace": shop_database, "source_name": shop_source},
            "erp": {"namespace": erp_schema, "source_name": erp_source},
        },
        "sources": [
            {
                "name": shop_source,
                "kind": "mariadb",
                "connection": {"dsn": {"env": shop_dsn_env}},
                "tables": [f"{shop_database}.{t}" for t in SHOP_TABLES],
                "server_id": server_id if server_id is not None else random.randint(10_000, 2**31),
                "heartbeat_interval_s": heartbeat_interval_s,
            },
            {
                "name": erp_source,
                "kind": "postgresql",
                "connection": {"dsn": {"env": erp_dsn_env}},
                "tables": [f"{erp_schema}.{t}" for t in ERP_TABLES],
                "heartbeat_interval_s": heartbeat_interval_s,
            },
        ],
        "targets": [
            {
                "name": f"{erp_source}-writer",
                "kind": "postgresql",
                "system": "erp",
                "apply_from": ["shop"],
                "connection": {"dsn": {"env": erp_dsn_env}},
            },
            {
                "name": f"{shop_source}-writer",
                "kind": "mariadb",
                "system": "shop",
                "apply_from": ["erp"],
                "connection": {"dsn": {"env": shop_dsn_env}},
            },
        ],
    }
