-- Demo ERP database: the Odoo 17 tables the replicator reads and writes, as Odoo's ORM creates them
-- (base, product, stock, sale, sale_stock and account), with the columns /work/shared/domain.md lists.
--
-- ORM conventions reproduced here:
--   * table = model name with '.' -> '_', "id serial PRIMARY KEY", create_uid/write_uid int4,
--     create_date/write_date timestamp without time zone (UTC);
--   * Char -> varchar (varchar(n) with size=n), Text/Html -> text, translatable fields -> jsonb {"en_US": ...},
--     Float with digits and Monetary -> numeric, Integer -> int4, Boolean -> bool, Date -> date,
--     Datetime -> timestamp without time zone (UTC), Selection -> varchar (the key);
--   * Many2one -> int4 with a FOREIGN KEY named <table>_<column>_fkey, ON DELETE as Odoo sets it: the field's
--     ondelete, else RESTRICT for a required field and SET NULL for an optional one;
--   * required fields are NOT NULL, _sql_constraints keep Odoo's names (<table>_<constraint name>),
--     index=True fields get a <table>_<column>_index btree index.
-- Deliberate differences, because this is a demo without an ORM:
--   * Many2one columns to models that are not part of the demo (res.users, uom.uom, product.category,
--     res.partner.title, product.pricelist, stock.picking.type, stock.lot, ...) are plain int4 without a FK;
--   * where Odoo fills a required column from an ORM default or precompute (the current company, the main
--     warehouse, the "Units" UoM, the "All" category, now()), the column gets that value as a DB default, so
--     that plain INSERTs work; create_date/write_date default to now() in UTC. Raw SQL never bumps write_date,
--     exactly as in Odoo;
--   * sale_order.name is UNIQUE (Odoo relies on its sequence);
--   * res_partner.email is indexed (last block): the replicator links pre-existing partners by email.
--
-- Loaded by replicator.demo.schemas.load_erp_schema in one transaction.
--
-- Seed (after the DDL): currencies EUR (1) and USD (2), company 1 "Demo Company" (EUR), 8 countries with ids
-- assigned alphabetically (different from PrestaShop's), the default stock locations, warehouse "WH",
-- 20 storable products with default_code DEMO-001..DEMO-020 inserted in reverse order (so product ids differ
-- from the shop's), their on-hand quantities 41..60 in WH/Stock, three journals, the company partner, 3 ERP-only
-- contacts and 2 partners that already exist for shop customers (same email, no ref).

-- ---------------------------------------------------------------------------------------------------------------
-- base
-- ---------------------------------------------------------------------------------------------------------------

CREATE TABLE res_currency (
    id serial PRIMARY KEY,
    name varchar(3) NOT NULL,
    full_name varchar,
    symbol varchar NOT NULL,
    rounding numeric,
    decimal_places int4,
    active bool DEFAULT true,
    position varchar DEFAULT 'after',
    currency_unit_label jsonb,
    currency_subunit_label jsonb,
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    CONSTRAINT res_currency_unique_name UNIQUE (name),
    CONSTRAINT res_currency_rounding_gt_zero CHECK (rounding > 0)
);

CREATE TABLE res_country (
    id serial PRIMARY KEY,
    name jsonb NOT NULL,
    code varchar(2) NOT NULL,
    address_format text,
    currency_id int4 REFERENCES res_currency (id) ON DELETE SET NULL,
    phone_code int4,
    name_position varchar DEFAULT 'before',
    vat_label jsonb,
    state_required bool DEFAULT false,
    zip_required bool DEFAULT true,
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    CONSTRAINT res_country_name_uniq UNIQUE (name),
    CONSTRAINT res_country_code_uniq UNIQUE (code)
);

CREATE TABLE res_country_state (
    id serial PRIMARY KEY,
    country_id int4 NOT NULL REFERENCES res_country (id) ON DELETE RESTRICT,
    name varchar NOT NULL,
    code varchar NOT NULL,
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    CONSTRAINT res_country_state_name_code_uniq UNIQUE (country_id, code)
);

CREATE TABLE res_partner (
    id serial PRIMARY KEY,
    name varchar,
    complete_name varchar,
    type varchar DEFAULT 'contact',
    parent_id int4 REFERENCES res_partner (id) ON DELETE SET NULL,
    commercial_partner_id int4 REFERENCES res_partner (id) ON DELETE SET NULL,
    commercial_company_name varchar,
    is_company bool DEFAULT false,
    company_name varchar,
    ref varchar,
    email varchar,
    phone varchar,
    mobile varchar,
    website varchar,
    street varchar,
    street2 varchar,
    zip varchar,
    city varchar,
    state_id int4 REFERENCES res_country_state (id) ON DELETE RESTRICT,
    country_id int4 REFERENCES res_country (id) ON DELETE RESTRICT,
    vat varchar,
    company_registry varchar,
    lang varchar,
    tz varchar,
    title int4,                                   -- res.partner.title (not in the demo)
    function varchar,
    comment text,
    active bool DEFAULT true,
    employee bool,
    color int4,
    partner_share bool,
    company_id int4,                              -- FK to res_company added below (circular)
    customer_rank int4 DEFAULT 0,
    supplier_rank int4 DEFAULT 0,
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    CONSTRAINT res_partner_check_name CHECK ((type = 'contact' AND name IS NOT NULL) OR (type != 'contact'))
);
CREATE INDEX res_partner_name_index ON res_partner (name);
CREATE INDEX res_partner_complete_name_index ON res_partner (complete_name);
CREATE INDEX res_partner_parent_id_index ON res_partner (parent_id);
CREATE INDEX res_partner_commercial_partner_id_index ON res_partner (commercial_partner_id);
CREATE INDEX res_partner_ref_index ON res_partner (ref);
CREATE INDEX res_partner_vat_index ON res_partner (vat);
CREATE INDEX res_partner_company_id_index ON res_partner (company_id);

CREATE TABLE res_company (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    partner_id int4 NOT NULL REFERENCES res_partner (id) ON DELETE RESTRICT,
    currency_id int4 NOT NULL REFERENCES res_currency (id) ON DELETE RESTRICT,
    parent_id int4 REFERENCES res_company (id) ON DELETE SET NULL,
    sequence int4 DEFAULT 10,
    active bool DEFAULT true,
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    CONSTRAINT res_company_name_uniq UNIQUE (name)
);

ALTER TABLE res_partner
    ADD CONSTRAINT res_partner_company_id_fkey FOREIGN KEY (company_id) REFERENCES res_company (id) ON DELETE SET NULL;

-- ---------------------------------------------------------------------------------------------------------------
-- product
-- ---------------------------------------------------------------------------------------------------------------

CREATE TABLE product_template (
    id serial PRIMARY KEY,
    name jsonb NOT NULL,
    sequence int4 DEFAULT 1,
    description jsonb,
    description_sale jsonb,
    default_code varchar,
    type varchar NOT NULL DEFAULT 'consu',
    detailed_type varchar NOT NULL DEFAULT 'consu',
    categ_id int4 NOT NULL DEFAULT 1,             -- product.category "All" (not in the demo)
    list_price numeric,
    volume numeric,
    weight numeric,
    sale_ok bool DEFAULT true,
    purchase_ok bool DEFAULT true,
    uom_id int4 NOT NULL DEFAULT 1,               -- uom.uom "Units" (not in the demo)
    uom_po_id int4 NOT NULL DEFAULT 1,
    company_id int4 REFERENCES res_company (id) ON DELETE SET NULL,
    active bool DEFAULT true,
    color int4,
    invoice_policy varchar DEFAULT 'order',
    tracking varchar NOT NULL DEFAULT 'none',
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX product_template_company_id_index ON product_template (company_id);

CREATE TABLE product_product (
    id serial PRIMARY KEY,
    product_tmpl_id int4 NOT NULL REFERENCES product_template (id) ON DELETE CASCADE,
    default_code varchar,
    barcode varchar,
    combination_indices varchar,
    volume numeric,
    weight numeric,
    active bool DEFAULT true,
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX product_product_product_tmpl_id_index ON product_product (product_tmpl_id);
CREATE INDEX product_product_default_code_index ON product_product (default_code);
CREATE UNIQUE INDEX product_product_combination_unique ON product_product (product_tmpl_id, combination_indices)
    WHERE active IS TRUE;

-- ---------------------------------------------------------------------------------------------------------------
-- stock
-- ---------------------------------------------------------------------------------------------------------------

CREATE TABLE stock_location (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    complete_name varchar,
    active bool DEFAULT true,
    usage varchar NOT NULL DEFAULT 'internal',
    location_id int4 REFERENCES stock_location (id) ON DELETE CASCADE,
    comment text,
    parent_path varchar,
    company_id int4 REFERENCES res_company (id) ON DELETE SET NULL,
    scrap_location bool DEFAULT false,
    return_location bool DEFAULT false,
    replenish_location bool DEFAULT false,
    barcode varchar,
    warehouse_id int4,                            -- FK to stock_warehouse added below (circular)
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    CONSTRAINT stock_location_barcode_company_uniq UNIQUE (barcode, company_id)
);
CREATE INDEX stock_location_location_id_index ON stock_location (location_id);
CREATE INDEX stock_location_parent_path_index ON stock_location (parent_path);
CREATE INDEX stock_location_company_id_index ON stock_location (company_id);

CREATE TABLE stock_warehouse (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    active bool DEFAULT true,
    company_id int4 NOT NULL DEFAULT 1 REFERENCES res_company (id) ON DELETE RESTRICT,
    partner_id int4 REFERENCES res_partner (id) ON DELETE SET NULL,
    view_location_id int4 NOT NULL REFERENCES stock_location (id) ON DELETE RESTRICT,
    lot_stock_id int4 NOT NULL REFERENCES stock_location (id) ON DELETE RESTRICT,
    code varchar(5) NOT NULL,
    reception_steps varchar NOT NULL DEFAULT 'one_step',
    delivery_steps varchar NOT NULL DEFAULT 'ship_only',
    sequence int4 DEFAULT 10,
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    CONSTRAINT stock_warehouse_warehouse_name_uniq UNIQUE (name, company_id),
    CONSTRAINT stock_warehouse_warehouse_code_uniq UNIQUE (code, company_id)
);

ALTER TABLE stock_location
    ADD CONSTRAINT stock_location_warehouse_id_fkey FOREIGN KEY (warehouse_id) REFERENCES stock_warehouse (id)
    ON DELETE SET NULL;

-- ---------------------------------------------------------------------------------------------------------------
-- sale (+ sale_stock)
-- ---------------------------------------------------------------------------------------------------------------

CREATE TABLE sale_order (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    state varchar NOT NULL DEFAULT 'draft',
    locked bool DEFAULT false,
    company_id int4 NOT NULL DEFAULT 1 REFERENCES res_company (id) ON DELETE RESTRICT,
    partner_id int4 NOT NULL REFERENCES res_partner (id) ON DELETE RESTRICT,
    partner_invoice_id int4 NOT NULL REFERENCES res_partner (id) ON DELETE RESTRICT,
    partner_shipping_id int4 NOT NULL REFERENCES res_partner (id) ON DELETE RESTRICT,
    date_order timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    validity_date date,
    commitment_date timestamp without time zone,
    client_order_ref varchar,
    origin varchar,
    reference varchar,
    note text,
    pricelist_id int4,                            -- product.pricelist (not in the demo)
    currency_id int4 REFERENCES res_currency (id) ON DELETE RESTRICT,
    currency_rate numeric,
    user_id int4,                                 -- res.users (not in the demo)
    team_id int4,
    payment_term_id int4,
    fiscal_position_id int4,
    amount_untaxed numeric,
    amount_tax numeric,
    amount_total numeric,
    invoice_status varchar,
    require_signature bool,
    require_payment bool,
    warehouse_id int4 NOT NULL DEFAULT 1 REFERENCES stock_warehouse (id) ON DELETE RESTRICT,
    picking_policy varchar NOT NULL DEFAULT 'direct',
    delivery_status varchar,
    effective_date timestamp without time zone,
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    CONSTRAINT sale_order_name_uniq UNIQUE (name),
    CONSTRAINT sale_order_date_order_conditional_required
        CHECK ((state = 'sale' AND date_order IS NOT NULL) OR state != 'sale')
);
CREATE INDEX sale_order_state_index ON sale_order (state);
CREATE INDEX sale_order_partner_id_index ON sale_order (partner_id);
CREATE INDEX sale_order_date_order_index ON sale_order (date_order);
CREATE INDEX sale_order_company_id_index ON sale_order (company_id);

CREATE TABLE sale_order_line (
    id serial PRIMARY KEY,
    order_id int4 NOT NULL REFERENCES sale_order (id) ON DELETE CASCADE,
    sequence int4 DEFAULT 10,
    display_type varchar,
    is_downpayment bool,
    product_id int4 REFERENCES product_product (id) ON DELETE RESTRICT,
    name text NOT NULL,
    product_uom_qty numeric NOT NULL DEFAULT 1.0,
    product_uom int4,                             -- uom.uom (not in the demo)
    price_unit numeric NOT NULL DEFAULT 0.0,
    discount numeric DEFAULT 0.0,
    price_subtotal numeric,
    price_tax numeric,
    price_total numeric,
    price_reduce_taxexcl numeric,
    price_reduce_taxinc numeric,
    qty_delivered_method varchar,
    qty_delivered numeric DEFAULT 0.0,
    qty_invoiced numeric DEFAULT 0.0,
    qty_to_invoice numeric DEFAULT 0.0,
    invoice_status varchar DEFAULT 'no',
    state varchar,
    order_partner_id int4 REFERENCES res_partner (id) ON DELETE SET NULL,
    company_id int4 REFERENCES res_company (id) ON DELETE SET NULL,
    currency_id int4 REFERENCES res_currency (id) ON DELETE SET NULL,
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX sale_order_line_order_id_index ON sale_order_line (order_id);
CREATE INDEX sale_order_line_product_id_index ON sale_order_line (product_id) WHERE product_id IS NOT NULL;

-- ---------------------------------------------------------------------------------------------------------------
-- stock operations (after sale: pickings and moves point to sale orders and lines)
-- ---------------------------------------------------------------------------------------------------------------

CREATE TABLE stock_picking (
    id serial PRIMARY KEY,
    name varchar DEFAULT '/',
    origin varchar,
    note text,
    move_type varchar NOT NULL DEFAULT 'direct',
    state varchar DEFAULT 'draft',
    priority varchar DEFAULT '0',
    scheduled_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    date_deadline timestamp without time zone,
    date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    date_done timestamp without time zone,
    location_id int4 NOT NULL REFERENCES stock_location (id) ON DELETE RESTRICT,
    location_dest_id int4 NOT NULL REFERENCES stock_location (id) ON DELETE RESTRICT,
    picking_type_id int4,                         -- stock.picking.type, required in Odoo (not in the demo)
    partner_id int4 REFERENCES res_partner (id) ON DELETE SET NULL,
    company_id int4 REFERENCES res_company (id) ON DELETE SET NULL,
    user_id int4,
    sale_id int4 REFERENCES sale_order (id) ON DELETE SET NULL,
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX stock_picking_name_index ON stock_picking (name);
CREATE INDEX stock_picking_origin_index ON stock_picking (origin);
CREATE INDEX stock_picking_state_index ON stock_picking (state);
CREATE INDEX stock_picking_sale_id_index ON stock_picking (sale_id);

CREATE TABLE stock_move (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    sequence int4 DEFAULT 10,
    priority varchar DEFAULT '0',
    date timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    date_deadline timestamp without time zone,
    company_id int4 NOT NULL DEFAULT 1 REFERENCES res_company (id) ON DELETE RESTRICT,
    product_id int4 NOT NULL REFERENCES product_product (id) ON DELETE RESTRICT,
    product_uom_qty numeric NOT NULL DEFAULT 0.0,
    product_uom int4 NOT NULL DEFAULT 1,          -- uom.uom "Units" (not in the demo)
    product_qty numeric,
    quantity numeric DEFAULT 0.0,
    picked bool DEFAULT false,
    location_id int4 NOT NULL REFERENCES stock_location (id) ON DELETE RESTRICT,
    location_dest_id int4 NOT NULL REFERENCES stock_location (id) ON DELETE RESTRICT,
    partner_id int4 REFERENCES res_partner (id) ON DELETE SET NULL,
    picking_id int4 REFERENCES stock_picking (id) ON DELETE SET NULL,
    state varchar DEFAULT 'draft',
    origin varchar,
    reference varchar,
    procure_method varchar NOT NULL DEFAULT 'make_to_stock',
    picking_type_id int4,
    sale_line_id int4 REFERENCES sale_order_line (id) ON DELETE SET NULL,
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX stock_move_date_index ON stock_move (date);
CREATE INDEX stock_move_product_id_index ON stock_move (product_id);
CREATE INDEX stock_move_location_id_index ON stock_move (location_id);
CREATE INDEX stock_move_location_dest_id_index ON stock_move (location_dest_id);
CREATE INDEX stock_move_picking_id_index ON stock_move (picking_id);
CREATE INDEX stock_move_state_index ON stock_move (state);
CREATE INDEX stock_move_sale_line_id_index ON stock_move (sale_line_id);

CREATE TABLE stock_quant (
    id serial PRIMARY KEY,
    product_id int4 NOT NULL REFERENCES product_product (id) ON DELETE RESTRICT,
    company_id int4 REFERENCES res_company (id) ON DELETE SET NULL,
    location_id int4 NOT NULL REFERENCES stock_location (id) ON DELETE RESTRICT,
    lot_id int4,                                  -- stock.lot (not in the demo)
    package_id int4,                              -- stock.quant.package (not in the demo)
    owner_id int4 REFERENCES res_partner (id) ON DELETE SET NULL,
    quantity numeric NOT NULL DEFAULT 0,
    reserved_quantity numeric NOT NULL DEFAULT 0,
    in_date timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    inventory_quantity numeric,
    inventory_diff_quantity numeric,
    inventory_date date,
    inventory_quantity_set bool DEFAULT false,
    user_id int4,
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX stock_quant_product_id_index ON stock_quant (product_id);
CREATE INDEX stock_quant_location_id_index ON stock_quant (location_id);

-- ---------------------------------------------------------------------------------------------------------------
-- account
-- ---------------------------------------------------------------------------------------------------------------

CREATE TABLE account_journal (
    id serial PRIMARY KEY,
    name jsonb NOT NULL,
    code varchar(5) NOT NULL,
    active bool DEFAULT true,
    type varchar NOT NULL,
    sequence int4 DEFAULT 10,
    invoice_reference_type varchar NOT NULL DEFAULT 'invoice',
    invoice_reference_model varchar NOT NULL DEFAULT 'odoo',
    currency_id int4 REFERENCES res_currency (id) ON DELETE SET NULL,
    company_id int4 NOT NULL DEFAULT 1 REFERENCES res_company (id) ON DELETE RESTRICT,
    refund_sequence bool DEFAULT false,
    payment_sequence bool,
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    CONSTRAINT account_journal_code_company_uniq UNIQUE (company_id, code)
);
CREATE INDEX account_journal_company_id_index ON account_journal (company_id);

CREATE TABLE account_move (
    id serial PRIMARY KEY,
    name varchar,
    ref varchar,
    date date NOT NULL,
    state varchar NOT NULL DEFAULT 'draft',
    move_type varchar NOT NULL DEFAULT 'entry',
    auto_post varchar NOT NULL DEFAULT 'no',
    journal_id int4 NOT NULL REFERENCES account_journal (id) ON DELETE RESTRICT,
    company_id int4 REFERENCES res_company (id) ON DELETE SET NULL,
    currency_id int4 NOT NULL REFERENCES res_currency (id) ON DELETE RESTRICT,
    partner_id int4 REFERENCES res_partner (id) ON DELETE RESTRICT,
    commercial_partner_id int4 REFERENCES res_partner (id) ON DELETE RESTRICT,
    payment_state varchar DEFAULT 'not_paid',
    invoice_date date,
    invoice_date_due date,
    invoice_origin varchar,
    payment_reference varchar,
    invoice_user_id int4,
    invoice_payment_term_id int4,
    fiscal_position_id int4,
    amount_untaxed numeric,
    amount_tax numeric,
    amount_total numeric,
    amount_residual numeric,
    amount_untaxed_signed numeric,
    amount_tax_signed numeric,
    amount_total_signed numeric,
    amount_residual_signed numeric,
    reversed_entry_id int4 REFERENCES account_move (id) ON DELETE SET NULL,
    payment_id int4,                              -- FK to account_payment added below (circular)
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX account_move_name_index ON account_move (name);
CREATE INDEX account_move_date_index ON account_move (date);
CREATE INDEX account_move_state_index ON account_move (state);
CREATE INDEX account_move_journal_id_index ON account_move (journal_id);
CREATE INDEX account_move_company_id_index ON account_move (company_id);
CREATE INDEX account_move_partner_id_index ON account_move (partner_id);
CREATE INDEX account_move_payment_id_index ON account_move (payment_id) WHERE payment_id IS NOT NULL;
-- Odoo 17 (account_move._auto_init): a posted entry's name is unique per journal.
CREATE UNIQUE INDEX account_move_unique_name ON account_move (name, journal_id)
    WHERE (state = 'posted' AND name != '/');

CREATE TABLE account_payment (
    id serial PRIMARY KEY,
    move_id int4 NOT NULL REFERENCES account_move (id) ON DELETE CASCADE,
    is_reconciled bool,
    is_matched bool,
    is_internal_transfer bool DEFAULT false,
    payment_type varchar NOT NULL DEFAULT 'inbound',
    partner_type varchar NOT NULL DEFAULT 'customer',
    payment_reference varchar,
    amount numeric,
    currency_id int4 REFERENCES res_currency (id) ON DELETE SET NULL,
    partner_id int4 REFERENCES res_partner (id) ON DELETE RESTRICT,
    payment_method_line_id int4,                  -- account.payment.method.line (not in the demo)
    destination_account_id int4,
    outstanding_account_id int4,
    create_uid int4,
    create_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    write_uid int4,
    write_date timestamp without time zone DEFAULT (now() AT TIME ZONE 'UTC'),
    CONSTRAINT account_payment_check_amount_not_negative CHECK (amount >= 0.0)
);
CREATE INDEX account_payment_move_id_index ON account_payment (move_id);

ALTER TABLE account_move
    ADD CONSTRAINT account_move_payment_id_fkey FOREIGN KEY (payment_id) REFERENCES account_payment (id)
    ON DELETE SET NULL;

-- ===============================================================================================================
-- Seed
-- ===============================================================================================================

INSERT INTO res_currency (id, name, full_name, symbol, rounding, decimal_places, active, position,
                          currency_unit_label, currency_subunit_label)
VALUES
    (1, 'EUR', 'Euro', '€', 0.01, 2, true, 'after', '{"en_US": "Euros"}', '{"en_US": "Cents"}'),
    (2, 'USD', 'United States dollar', '$', 0.01, 2, true, 'before', '{"en_US": "Dollars"}', '{"en_US": "Cents"}');
SELECT setval(pg_get_serial_sequence('res_currency', 'id'), (SELECT max(id) FROM res_currency));

-- Inserted in alphabetical order of the English name, so the serial gives ids 1..8 (the shop's ids differ,
-- except Spain, 6 on both sides: join on the ISO code, never on the id).
INSERT INTO res_country (name, code, phone_code, currency_id, zip_required)
VALUES
    ('{"en_US": "Belgium"}', 'BE', 32, 1, true),
    ('{"en_US": "France"}', 'FR', 33, 1, true),
    ('{"en_US": "Germany"}', 'DE', 49, 1, true),
    ('{"en_US": "Italy"}', 'IT', 39, 1, true),
    ('{"en_US": "Netherlands"}', 'NL', 31, 1, true),
    ('{"en_US": "Spain"}', 'ES', 34, 1, true),
    ('{"en_US": "United Kingdom"}', 'GB', 44, NULL, true),
    ('{"en_US": "United States"}', 'US', 1, 2, true);

-- The company's partner first (res_company.partner_id is required), then the company, then the partner's
-- company_id.
INSERT INTO res_partner (id, name, complete_name, type, commercial_partner_id, commercial_company_name, is_company,
                         email, phone, website, street, zip, city, country_id, lang, active, partner_share,
                         customer_rank, supplier_rank)
VALUES
    (1, 'Demo Company', 'Demo Company', 'contact', 1, 'Demo Company', true, 'info@demo-company.example',
     '+33 4 78 00 00 00', 'https://demo-company.example', '5 Place Bellecour', '69002', 'Lyon',
     (SELECT id FROM res_country WHERE code = 'FR'), 'en_US', true, false, 0, 0);

INSERT INTO res_company (id, name, partner_id, currency_id, sequence, active)
VALUES (1, 'Demo Company', 1, 1, 10, true);
SELECT setval(pg_get_serial_sequence('res_company', 'id'), (SELECT max(id) FROM res_company));

UPDATE res_partner SET company_id = 1 WHERE id = 1;

-- ERP-only contacts (never replicated to the shop: no ref) and two partners that existed before replication
-- for shop customers 2 (Bruno Keller) and 4 (Davide Rossi): same lower-case email, no ref, linked by email.
INSERT INTO res_partner (id, name, complete_name, type, commercial_partner_id, commercial_company_name, is_company,
                         company_name, ref, email, phone, mobile, street, zip, city, country_id, lang, active,
                         partner_share, customer_rank, supplier_rank)
VALUES
    (2, 'Gemini Furniture', 'Gemini Furniture', 'contact', 2, 'Gemini Furniture', true, NULL, NULL,
     'contact@gemini-furniture.example', '+32 2 640 11 22', NULL, 'Avenue Louise 231', '1050', 'Bruxelles',
     (SELECT id FROM res_country WHERE code = 'BE'), 'en_US', true, true, 1, 0),
    (3, 'Wood Corner', 'Wood Corner', 'contact', 3, 'Wood Corner', true, NULL, NULL,
     'sales@wood-corner.example', '+1 415 555 0142', NULL, '1839 Arbor Way', '94107', 'San Francisco',
     (SELECT id FROM res_country WHERE code = 'US'), 'en_US', true, true, 0, 1),
    (4, 'Joel Willis', 'Joel Willis', 'contact', 4, NULL, false, NULL, NULL,
     'joel.willis@example.org', '+44 20 7946 0321', '+44 7700 900123', '221 Baker Street', 'NW1 6XE', 'London',
     (SELECT id FROM res_country WHERE code = 'GB'), 'en_US', true, true, 1, 0),
    (5, 'Bruno Keller', 'Bruno Keller', 'contact', 5, NULL, false, NULL, NULL,
     'bruno.keller@example.com', '+49 30 2345 6789', NULL, 'Friedrichstraße 123', '10117', 'Berlin',
     (SELECT id FROM res_country WHERE code = 'DE'), 'en_US', true, true, 1, 0),
    (6, 'Davide Rossi', 'Davide Rossi', 'contact', 6, 'Rossi Design', false, 'Rossi Design', NULL,
     'davide.rossi@example.com', '+39 02 8645 1234', NULL, 'Via Torino 21', '20123', 'Milano',
     (SELECT id FROM res_country WHERE code = 'IT'), 'en_US', true, true, 1, 0);
SELECT setval(pg_get_serial_sequence('res_partner', 'id'), (SELECT max(id) FROM res_partner));

-- Default locations (stock/data/stock_data.xml) and the warehouse's view and stock locations.
-- complete_name follows Odoo: "<parent complete_name>/<name>" unless the location is a view (then its name).
INSERT INTO stock_location (id, name, complete_name, usage, location_id, parent_path, company_id, active)
VALUES
    (1, 'Physical Locations', 'Physical Locations', 'view', NULL, '1/', NULL, true),
    (2, 'Partners', 'Partners', 'view', NULL, '2/', NULL, true),
    (3, 'Virtual Locations', 'Virtual Locations', 'view', NULL, '3/', NULL, true),
    (4, 'Vendors', 'Partners/Vendors', 'supplier', 2, '2/4/', NULL, true),
    (5, 'Customers', 'Partners/Customers', 'customer', 2, '2/5/', NULL, true),
    (6, 'Inventory adjustment', 'Virtual Locations/Inventory adjustment', 'inventory', 3, '3/6/', 1, true),
    (7, 'WH', 'WH', 'view', 1, '1/7/', 1, true),
    (8, 'Stock', 'WH/Stock', 'internal', 7, '1/7/8/', 1, true);
SELECT setval(pg_get_serial_sequence('stock_location', 'id'), (SELECT max(id) FROM stock_location));

INSERT INTO stock_warehouse (id, name, code, company_id, partner_id, view_location_id, lot_stock_id, sequence)
VALUES (1, 'Demo warehouse', 'WH', 1, 1, 7, 8, 10);
SELECT setval(pg_get_serial_sequence('stock_warehouse', 'id'), (SELECT max(id) FROM stock_warehouse));

UPDATE stock_location SET warehouse_id = 1 WHERE id IN (7, 8);

-- The shop's 20 products (same default_code, name, price and weight), inserted in reverse order:
-- template and variant id = 21 - n for DEMO-0nn, so no id equals the shop's id_product.
INSERT INTO product_template (id, name, default_code, type, detailed_type, categ_id, list_price, weight, sale_ok,
                              purchase_ok, uom_id, uom_po_id, company_id, active, invoice_policy, tracking)
SELECT 21 - n, jsonb_build_object('en_US', label), code, 'product', 'product', 1, price, weight, true, true, 1, 1,
       NULL, true, 'order', 'none'
FROM (VALUES
    (20, 'DEMO-020', 'Cast Iron Skillet', 64.90, 2.80),
    (19, 'DEMO-019', 'Chef Knife', 129.00, 0.25),
    (18, 'DEMO-018', 'Herbal Tea Sampler', 11.90, 0.20),
    (17, 'DEMO-017', 'Scented Candle', 18.00, 0.45),
    (16, 'DEMO-016', 'Phone Stand', 15.50, 0.25),
    (15, 'DEMO-015', 'Noise Cancelling Headphones', 199.00, 0.30),
    (14, 'DEMO-014', 'Bluetooth Speaker', 79.00, 0.70),
    (13, 'DEMO-013', 'Yoga Mat', 34.90, 1.50),
    (12, 'DEMO-012', 'Running Socks (3 pairs)', 14.90, 0.15),
    (11, 'DEMO-011', 'Wool Beanie', 22.00, 0.10),
    (10, 'DEMO-010', 'Leather Wallet', 59.00, 0.12),
    (9, 'DEMO-009', 'Fountain Pen', 45.00, 0.05),
    (8, 'DEMO-008', 'Dotted Notebook A5', 6.50, 0.20),
    (7, 'DEMO-007', 'Desk Lamp', 39.90, 1.20),
    (6, 'DEMO-006', 'USB-C Charging Cable', 9.90, 0.05),
    (5, 'DEMO-005', 'Mechanical Keyboard', 89.00, 0.95),
    (4, 'DEMO-004', 'Wireless Mouse', 24.90, 0.10),
    (3, 'DEMO-003', 'Cotton Tote Bag', 12.00, 0.15),
    (2, 'DEMO-002', 'Stainless Steel Water Bottle', 19.50, 0.40),
    (1, 'DEMO-001', 'Ceramic Coffee Mug', 8.90, 0.35)
) AS demo (n, code, label, price, weight)
ORDER BY n DESC;
SELECT setval(pg_get_serial_sequence('product_template', 'id'), (SELECT max(id) FROM product_template));

INSERT INTO product_product (id, product_tmpl_id, default_code, combination_indices, weight, active)
SELECT id, id, default_code, '', weight, true
FROM product_template
ORDER BY id;
SELECT setval(pg_get_serial_sequence('product_product', 'id'), (SELECT max(id) FROM product_product));

-- On hand = the shop's stock (40 + n for DEMO-0nn) in WH/Stock, nothing reserved; the counterpart of the
-- initial inventory adjustment is the negative quant in Virtual Locations/Inventory adjustment.
INSERT INTO stock_quant (product_id, company_id, location_id, quantity, reserved_quantity, in_date,
                         inventory_quantity, inventory_diff_quantity, inventory_quantity_set)
SELECT pp.id, 1, 8, 40 + right(pp.default_code, 3)::int, 0, TIMESTAMP '2024-01-10 08:00:00', 0, 0, false
FROM product_product pp
ORDER BY pp.id;
INSERT INTO stock_quant (product_id, company_id, location_id, quantity, reserved_quantity, in_date,
                         inventory_quantity, inventory_diff_quantity, inventory_quantity_set)
SELECT pp.id, 1, 6, -(40 + right(pp.default_code, 3)::int), 0, TIMESTAMP '2024-01-10 08:00:00', 0, 0, false
FROM product_product pp
ORDER BY pp.id;

INSERT INTO account_journal (id, name, code, type, sequence, company_id, currency_id, refund_sequence,
                             payment_sequence)
VALUES
    (1, '{"en_US": "Customer Invoices"}', 'INV', 'sale', 5, 1, NULL, true, false),
    (2, '{"en_US": "Bank"}', 'BNK1', 'bank', 10, 1, NULL, false, true),
    (3, '{"en_US": "Cash"}', 'CSH1', 'cash', 11, 1, NULL, false, true);
SELECT setval(pg_get_serial_sequence('account_journal', 'id'), (SELECT max(id) FROM account_journal));

-- ===============================================================================================================
-- Logical replication: full before-images
-- ===============================================================================================================
-- pgoutput sends the old row of an UPDATE/DELETE only as the replica identity. With the default (primary key)
-- the replicator would see the old id only and could not tell which fields changed, nor evaluate filters on the
-- old row (e.g. a partner whose ref no longer starts with 'PS-'). FULL sends the whole old row.
ALTER TABLE res_partner REPLICA IDENTITY FULL;
ALTER TABLE sale_order REPLICA IDENTITY FULL;
ALTER TABLE sale_order_line REPLICA IDENTITY FULL;
ALTER TABLE stock_quant REPLICA IDENTITY FULL;
ALTER TABLE stock_move REPLICA IDENTITY FULL;
ALTER TABLE product_product REPLICA IDENTITY FULL;
ALTER TABLE stock_picking REPLICA IDENTITY FULL;

-- ===============================================================================================================
-- Replicator deployment: index for linking pre-existing partners
-- ===============================================================================================================
-- Odoo does not index res_partner.email. The customer mapping links a new shop customer to an existing partner
-- by email (match_on: [email]); without this index every link scans res_partner ("replicator validate" warns).
CREATE INDEX res_partner_email_index ON res_partner (email);

-- The payment mappings find a payment's order by its PrestaShop reference (sale_order.client_order_ref).
CREATE INDEX sale_order_client_order_ref_index ON sale_order (client_order_ref);
