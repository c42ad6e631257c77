"""Demo databases: a PrestaShop 8 shop and an Odoo 17 ERP with matching seed data."""
