-- Tables the replicator keeps in the shop database for the stock flow (mappings/prestashop-odoo/stock.yaml,
-- DESIGN 4.6): mirrors of the ERP rows the shop's sellable quantity is computed from. Only the replicator
-- writes them, in the same transaction as the quantities it recomputes. Load once, before the first run.

CREATE TABLE IF NOT EXISTS replicator_mirror_location (
  id INT NOT NULL PRIMARY KEY,
  location_usage VARCHAR(16) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS replicator_mirror_quant (
  id INT NOT NULL PRIMARY KEY,
  product_id INT NOT NULL,
  location_id INT NOT NULL,
  location_usage VARCHAR(16) NOT NULL,
  quantity DECIMAL(20,6) NOT NULL DEFAULT 0,
  reserved_quantity DECIMAL(20,6) NOT NULL DEFAULT 0,
  KEY product_id (product_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS replicator_mirror_move (
  id INT NOT NULL PRIMARY KEY,
  product_id INT NOT NULL,
  origin VARCHAR(64) NULL,
  state VARCHAR(16) NOT NULL,
  quantity DECIMAL(20,6) NOT NULL DEFAULT 0,
  -- The shop order of a move whose origin is 'PS<id_order>' (rule erp_move_shop_order), else NULL.
  id_order INT NULL,
  KEY product_id (product_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
