"""Business simulators: the shop (PrestaShop 8 on MariaDB) and the ERP (Odoo 17 on PostgreSQL) as their users
drive them, for the demo, end-to-end tests and benchmarks. Each touches only its own database."""

from replicator.simulate.base import Simulator
from replicator.simulate.erp import ErpSimulator
from replicator.simulate.shop import ShopSimulator

__all__ = ["ErpSimulator", "ShopSimulator", "Simulator"]
