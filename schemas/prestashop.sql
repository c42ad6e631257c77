-- Demo shop database: the PrestaShop 8 tables the replicator reads and writes, single shop (id_shop = 1,
-- id_shop_group = 1), prefix ps_, utf8mb4, InnoDB, no FOREIGN KEY constraints (PrestaShop has none).
--
-- Column definitions and KEYs are copied from PrestaShop 8's install-dev/data/db_structure.sql (PREFIX_ -> ps_,
-- ENGINE_TYPE -> InnoDB). ps_lang is not in that file: PrestaShop 8 creates it from its Doctrine entity
-- (PrestaShopBundle\Entity\Lang), whose definition is used here as is (id_lang is a signed INT(11) there).
-- Money is DECIMAL(20,6) excl. tax unless the column says otherwise, DATETIMEs are shop-local time.
--
-- Loaded by replicator.demo.schemas.load_shop_schema, which splits this file on semicolons outside quotes and
-- comments. Keep string literals free of semicolons anyway.
--
-- Seed (after the DDL): language 1 = English (en-US), currency 1 = EUR, 8 countries with PrestaShop's own ids,
-- the 13 default order states, 20 products with references DEMO-001..DEMO-020 and stock 41..60,
-- 5 customers with one address each. No orders.

SET NAMES utf8mb4;

-- ---------------------------------------------------------------------------------------------------------------
-- Reference data
-- ---------------------------------------------------------------------------------------------------------------

CREATE TABLE `ps_lang` (
  `id_lang` int(11) NOT NULL AUTO_INCREMENT,
  `name` varchar(32) NOT NULL,
  `active` tinyint(1) NOT NULL,
  `iso_code` varchar(2) NOT NULL,
  `language_code` varchar(5) NOT NULL,
  `locale` varchar(5) NOT NULL,
  `date_format_lite` varchar(32) NOT NULL,
  `date_format_full` varchar(32) NOT NULL,
  `is_rtl` tinyint(1) NOT NULL,
  PRIMARY KEY (`id_lang`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `ps_country` (
  `id_country` int(10) unsigned NOT NULL auto_increment,
  `id_zone` int(10) unsigned NOT NULL,
  `id_currency` int(10) unsigned NOT NULL DEFAULT '0',
  `iso_code` varchar(3) NOT NULL,
  `call_prefix` int(10) NOT NULL DEFAULT '0',
  `active` tinyint(1) unsigned NOT NULL DEFAULT '0',
  `contains_states` tinyint(1) NOT NULL DEFAULT '0',
  `need_identification_number` tinyint(1) NOT NULL DEFAULT '0',
  `need_zip_code` tinyint(1) NOT NULL DEFAULT '1',
  `zip_code_format` varchar(12) NOT NULL DEFAULT '',
  `display_tax_label` BOOLEAN NOT NULL,
  PRIMARY KEY (`id_country`),
  KEY `country_iso_code` (`iso_code`),
  KEY `country_` (`id_zone`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `ps_country_lang` (
  `id_country` int(10) unsigned NOT NULL,
  `id_lang` int(10) unsigned NOT NULL,
  `name` varchar(64) NOT NULL,
  PRIMARY KEY (`id_country`, `id_lang`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `ps_currency` (
  `id_currency` int(10) unsigned NOT NULL auto_increment,
  `name` varchar(64) NOT NULL, /* Deprecated since 1.7.5.0. Use PREFIX_currency_lang.name instead. */
  `iso_code` varchar(3) NOT NULL DEFAULT '0',
  `numeric_iso_code` varchar(3),
  `precision` int(2) NOT NULL DEFAULT 6,
  `conversion_rate` decimal(13,6) NOT NULL,
  `deleted` tinyint(1) unsigned NOT NULL DEFAULT '0',
  `active` tinyint(1) unsigned NOT NULL DEFAULT '1',
  `unofficial` tinyint(1) unsigned NOT NULL DEFAULT '0',
  `modified` tinyint(1) unsigned NOT NULL DEFAULT '0',
  PRIMARY KEY (`id_currency`),
  KEY `currency_iso_code` (`iso_code`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- ---------------------------------------------------------------------------------------------------------------
-- Customers and addresses
-- ---------------------------------------------------------------------------------------------------------------

CREATE TABLE `ps_customer` (
  `id_customer` int(10) unsigned NOT NULL auto_increment,
  `id_shop_group` INT(11) UNSIGNED NOT NULL DEFAULT '1',
  `id_shop` INT(11) UNSIGNED NOT NULL DEFAULT '1',
  `id_gender` int(10) unsigned NOT NULL,
  `id_default_group` int(10) unsigned NOT NULL DEFAULT '1',
  `id_lang` int(10) unsigned NULL,
  `id_risk` int(10) unsigned NOT NULL DEFAULT '1',
  `company` varchar(255),
  `siret` varchar(14),
  `ape` varchar(6),
  `firstname` varchar(255) NOT NULL,
  `lastname` varchar(255) NOT NULL,
  `email` varchar(255) NOT NULL,
  `passwd` varchar(255) NOT NULL,
  `last_passwd_gen` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `birthday` date DEFAULT NULL,
  `newsletter` tinyint(1) unsigned NOT NULL DEFAULT '0',
  `ip_registration_newsletter` varchar(15) DEFAULT NULL,
  `newsletter_date_add` datetime DEFAULT NULL,
  `optin` tinyint(1) unsigned NOT NULL DEFAULT '0',
  `website` varchar(128),
  `outstanding_allow_amount` DECIMAL(20, 6) NOT NULL DEFAULT '0.00',
  `show_public_prices` tinyint(1) unsigned NOT NULL DEFAULT '0',
  `max_payment_days` int(10) unsigned NOT NULL DEFAULT '60',
  `secure_key` varchar(32) NOT NULL DEFAULT '-1',
  `note` text,
  `active` tinyint(1) unsigned NOT NULL DEFAULT '0',
  `is_guest` tinyint(1) NOT NULL DEFAULT '0',
  `deleted` tinyint(1) NOT NULL DEFAULT '0',
  `date_add` datetime NOT NULL,
  `date_upd` datetime NOT NULL,
  `reset_password_token` varchar(40) DEFAULT NULL,
  `reset_password_validity` datetime DEFAULT NULL,
  PRIMARY KEY (`id_customer`),
  KEY `customer_email` (`email`),
  KEY `customer_login` (`email`, `passwd`),
  KEY `id_customer_passwd` (`id_customer`, `passwd`),
  KEY `id_gender` (`id_gender`),
  KEY `id_shop_group` (`id_shop_group`),
  KEY `id_shop` (`id_shop`, `date_add`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `ps_address` (
  `id_address` int(10) unsigned NOT NULL auto_increment,
  `id_country` int(10) unsigned NOT NULL,
  `id_state` int(10) unsigned DEFAULT NULL,
  `id_customer` int(10) unsigned NOT NULL DEFAULT '0',
  `id_manufacturer` int(10) unsigned NOT NULL DEFAULT '0',
  `id_supplier` int(10) unsigned NOT NULL DEFAULT '0',
  `id_warehouse` int(10) unsigned NOT NULL DEFAULT '0',
  `alias` varchar(32) NOT NULL,
  `company` varchar(255) DEFAULT NULL,
  `lastname` varchar(255) NOT NULL,
  `firstname` varchar(255) NOT NULL,
  `address1` varchar(128) NOT NULL,
  `address2` varchar(128) DEFAULT NULL,
  `postcode` varchar(12) DEFAULT NULL,
  `city` varchar(64) NOT NULL,
  `other` text,
  `phone` varchar(32) DEFAULT NULL,
  `phone_mobile` varchar(32) DEFAULT NULL,
  `vat_number` varchar(32) DEFAULT NULL,
  `dni` varchar(16) DEFAULT NULL,
  `date_add` datetime NOT NULL,
  `date_upd` datetime NOT NULL,
  `active` tinyint(1) unsigned NOT NULL DEFAULT '1',
  `deleted` tinyint(1) unsigned NOT NULL DEFAULT '0',
  PRIMARY KEY (`id_address`),
  KEY `address_customer` (`id_customer`),
  KEY `id_country` (`id_country`),
  KEY `id_state` (`id_state`),
  KEY `id_manufacturer` (`id_manufacturer`),
  KEY `id_supplier` (`id_supplier`),
  KEY `id_warehouse` (`id_warehouse`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- ---------------------------------------------------------------------------------------------------------------
-- Catalog and stock
-- ---------------------------------------------------------------------------------------------------------------

CREATE TABLE `ps_product` (
  `id_product` int(10) unsigned NOT NULL auto_increment,
  `id_supplier` int(10) unsigned DEFAULT NULL,
  `id_manufacturer` int(10) unsigned DEFAULT NULL,
  `id_category_default` int(10) unsigned DEFAULT NULL,
  `id_shop_default` int(10) unsigned NOT NULL DEFAULT 1,
  `id_tax_rules_group` INT(11) UNSIGNED NOT NULL,
  `on_sale` tinyint(1) unsigned NOT NULL DEFAULT '0',
  `online_only` tinyint(1) unsigned NOT NULL DEFAULT '0',
  `ean13` varchar(13) DEFAULT NULL,
  `isbn` varchar(32) DEFAULT NULL,
  `upc` varchar(12) DEFAULT NULL,
  `mpn` varchar(40) DEFAULT NULL,
  `ecotax` decimal(17, 6) NOT NULL DEFAULT '0.00',
  `quantity` int(10) NOT NULL DEFAULT '0',
  `minimal_quantity` int(10) unsigned NOT NULL DEFAULT '1',
  `low_stock_threshold` int(10) NULL DEFAULT NULL,
  `low_stock_alert` TINYINT(1) NOT NULL DEFAULT 0,
  `price` decimal(20, 6) NOT NULL DEFAULT '0.000000',
  `wholesale_price` decimal(20, 6) NOT NULL DEFAULT '0.000000',
  `unity` varchar(255) DEFAULT NULL,
  `unit_price` decimal(20, 6) NOT NULL DEFAULT '0.000000',
  `unit_price_ratio` decimal(20, 6) NOT NULL DEFAULT '0.000000',
  `additional_shipping_cost` decimal(20, 6) NOT NULL DEFAULT '0.000000',
  `reference` varchar(64) DEFAULT NULL,
  `supplier_reference` varchar(64) DEFAULT NULL,
  `location` varchar(255) NOT NULL DEFAULT '',
  `width` DECIMAL(20, 6) NOT NULL DEFAULT '0',
  `height` DECIMAL(20, 6) NOT NULL DEFAULT '0',
  `depth` DECIMAL(20, 6) NOT NULL DEFAULT '0',
  `weight` DECIMAL(20, 6) NOT NULL DEFAULT '0',
  `out_of_stock` int(10) unsigned NOT NULL DEFAULT '2',
  `additional_delivery_times` tinyint(1) unsigned NOT NULL DEFAULT '1',
  `quantity_discount` tinyint(1) DEFAULT '0',
  `customizable` tinyint(2) NOT NULL DEFAULT '0',
  `uploadable_files` tinyint(4) NOT NULL DEFAULT '0',
  `text_fields` tinyint(4) NOT NULL DEFAULT '0',
  `active` tinyint(1) unsigned NOT NULL DEFAULT '0',
  `redirect_type` ENUM(
    '', '404', '410', '301-product', '302-product',
    '301-category', '302-category', '200-displayed',
    '404-displayed', '410-displayed', 'default'
  ) NOT NULL DEFAULT 'default',
  `id_type_redirected` int(10) unsigned NOT NULL DEFAULT '0',
  `available_for_order` tinyint(1) NOT NULL DEFAULT '1',
  `available_date` date DEFAULT NULL,
  `show_condition` tinyint(1) NOT NULL DEFAULT '0',
  `condition` ENUM('new', 'used', 'refurbished') NOT NULL DEFAULT 'new',
  `show_price` tinyint(1) NOT NULL DEFAULT '1',
  `indexed` tinyint(1) NOT NULL DEFAULT '0',
  `visibility` ENUM(
    'both', 'catalog', 'search', 'none'
  ) NOT NULL DEFAULT 'both',
  `cache_is_pack` tinyint(1) NOT NULL DEFAULT '0',
  `cache_has_attachments` tinyint(1) NOT NULL DEFAULT '0',
  `is_virtual` tinyint(1) NOT NULL DEFAULT '0',
  `cache_default_attribute` int(10) unsigned DEFAULT NULL,
  `date_add` datetime NOT NULL,
  `date_upd` datetime NOT NULL,
  `date_novelty` datetime NOT NULL,
  `advanced_stock_management` tinyint(1) DEFAULT '0' NOT NULL,
  `pack_stock_type` int(11) unsigned DEFAULT '3' NOT NULL,
  `state` int(11) unsigned NOT NULL DEFAULT '1',
  `product_type` ENUM(
    'standard', 'pack', 'virtual', 'combinations', ''
  ) NOT NULL DEFAULT '',
  PRIMARY KEY (`id_product`),
  INDEX reference_idx(`reference`),
  INDEX supplier_reference_idx(`supplier_reference`),
  KEY `product_supplier` (`id_supplier`),
  KEY `product_manufacturer` (`id_manufacturer`, `id_product`),
  KEY `id_category_default` (`id_category_default`),
  KEY `indexed` (`indexed`),
  KEY `date_add` (`date_add`),
  KEY `state` (`state`, `date_upd`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `ps_product_lang` (
  `id_product` int(10) unsigned NOT NULL,
  `id_shop` INT(11) UNSIGNED NOT NULL DEFAULT '1',
  `id_lang` int(10) unsigned NOT NULL,
  `description` text,
  `description_short` text,
  `link_rewrite` varchar(128) NOT NULL,
  `meta_description` varchar(512) DEFAULT NULL,
  `meta_keywords` varchar(255) DEFAULT NULL,
  `meta_title` varchar(128) DEFAULT NULL,
  `name` varchar(128) NOT NULL,
  `available_now` varchar(255) DEFAULT NULL,
  `available_later` varchar(255) DEFAULT NULL,
  `delivery_in_stock` varchar(255) DEFAULT NULL,
  `delivery_out_stock` varchar(255) DEFAULT NULL,
  PRIMARY KEY (
    `id_product`, `id_shop`, `id_lang`
  ),
  KEY `id_lang` (`id_lang`),
  KEY `name` (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `ps_product_shop` (
  `id_product` int(10) unsigned NOT NULL,
  `id_shop` int(10) unsigned NOT NULL,
  `id_category_default` int(10) unsigned DEFAULT NULL,
  `id_tax_rules_group` INT(11) UNSIGNED NOT NULL,
  `on_sale` tinyint(1) unsigned NOT NULL DEFAULT '0',
  `online_only` tinyint(1) unsigned NOT NULL DEFAULT '0',
  `ecotax` decimal(17, 6) NOT NULL DEFAULT '0.000000',
  `minimal_quantity` int(10) unsigned NOT NULL DEFAULT '1',
  `low_stock_threshold` int(10) NULL DEFAULT NULL,
  `low_stock_alert` TINYINT(1) NOT NULL DEFAULT 0,
  `price` decimal(20, 6) NOT NULL DEFAULT '0.000000',
  `wholesale_price` decimal(20, 6) NOT NULL DEFAULT '0.000000',
  `unity` varchar(255) DEFAULT NULL,
  `unit_price` decimal(20, 6) NOT NULL DEFAULT '0.000000',
  `unit_price_ratio` decimal(20, 6) NOT NULL DEFAULT '0.000000',
  `additional_shipping_cost` decimal(20, 6) NOT NULL DEFAULT '0.000000',
  `customizable` tinyint(2) NOT NULL DEFAULT '0',
  `uploadable_files` tinyint(4) NOT NULL DEFAULT '0',
  `text_fields` tinyint(4) NOT NULL DEFAULT '0',
  `active` tinyint(1) unsigned NOT NULL DEFAULT '0',
  `redirect_type` ENUM(
    '', '404', '410', '301-product', '302-product',
    '301-category', '302-category', '200-displayed',
    '404-displayed', '410-displayed', 'default'
  ) NOT NULL DEFAULT 'default',
  `id_type_redirected` int(10) unsigned NOT NULL DEFAULT '0',
  `available_for_order` tinyint(1) NOT NULL DEFAULT '1',
  `available_date` date DEFAULT NULL,
  `show_condition` tinyint(1) NOT NULL DEFAULT '1',
  `condition` enum('new', 'used', 'refurbished') NOT NULL DEFAULT 'new',
  `show_price` tinyint(1) NOT NULL DEFAULT '1',
  `indexed` tinyint(1) NOT NULL DEFAULT '0',
  `visibility` enum(
    'both', 'catalog', 'search', 'none'
  ) NOT NULL DEFAULT 'both',
  `cache_default_attribute` int(10) unsigned DEFAULT NULL,
  `advanced_stock_management` tinyint(1) DEFAULT '0' NOT NULL,
  `date_add` datetime NOT NULL,
  `date_upd` datetime NOT NULL,
  `date_novelty` datetime NOT NULL,
  `pack_stock_type` int(11) unsigned DEFAULT '3' NOT NULL,
  PRIMARY KEY (`id_product`, `id_shop`),
  KEY `id_category_default` (`id_category_default`),
  KEY `date_add` (
    `date_add`, `active`, `visibility`
  ),
  KEY `indexed` (
    `indexed`, `active`, `id_product`
  )
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `ps_stock_available` (
  `id_stock_available` INT(11) UNSIGNED NOT NULL AUTO_INCREMENT,
  `id_product` INT(11) UNSIGNED NOT NULL,
  `id_product_attribute` INT(11) UNSIGNED NOT NULL,
  `id_shop` INT(11) UNSIGNED NOT NULL,
  `id_shop_group` INT(11) UNSIGNED NOT NULL,
  `quantity` INT(10) NOT NULL DEFAULT '0',
  `physical_quantity` INT(11) NOT NULL DEFAULT '0',
  `reserved_quantity` INT(11) NOT NULL DEFAULT '0',
  `depends_on_stock` TINYINT(1) UNSIGNED NOT NULL DEFAULT '0',
  `out_of_stock` TINYINT(1) UNSIGNED NOT NULL DEFAULT '0',
  `location` VARCHAR(255) NOT NULL DEFAULT '',
  PRIMARY KEY (`id_stock_available`),
  KEY `id_shop` (`id_shop`),
  KEY `id_shop_group` (`id_shop_group`),
  KEY `id_product` (`id_product`),
  KEY `id_product_attribute` (`id_product_attribute`),
  UNIQUE `product_sqlstock` (
    `id_product`, `id_product_attribute`,
    `id_shop`, `id_shop_group`
  )
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- ---------------------------------------------------------------------------------------------------------------
-- Orders, states, invoices and payments
-- ---------------------------------------------------------------------------------------------------------------

CREATE TABLE `ps_orders` (
  `id_order` int(10) unsigned NOT NULL auto_increment,
  `reference` VARCHAR(9),
  `id_shop_group` INT(11) UNSIGNED NOT NULL DEFAULT '1',
  `id_shop` INT(11) UNSIGNED NOT NULL DEFAULT '1',
  `id_carrier` int(10) unsigned NOT NULL,
  `id_lang` int(10) unsigned NOT NULL,
  `id_customer` int(10) unsigned NOT NULL,
  `id_cart` int(10) unsigned NOT NULL,
  `id_currency` int(10) unsigned NOT NULL,
  `id_address_delivery` int(10) unsigned NOT NULL,
  `id_address_invoice` int(10) unsigned NOT NULL,
  `current_state` int(10) unsigned NOT NULL,
  `secure_key` varchar(32) NOT NULL DEFAULT '-1',
  `payment` varchar(255) NOT NULL,
  `conversion_rate` decimal(13, 6) NOT NULL DEFAULT 1,
  `module` varchar(255) DEFAULT NULL,
  `recyclable` tinyint(1) unsigned NOT NULL DEFAULT '0',
  `gift` tinyint(1) unsigned NOT NULL DEFAULT '0',
  `gift_message` text,
  `mobile_theme` tinyint(1) NOT NULL DEFAULT '0',
  `total_discounts` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_discounts_tax_incl` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_discounts_tax_excl` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_paid` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_paid_tax_incl` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_paid_tax_excl` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_paid_real` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_products` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_products_wt` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_shipping` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_shipping_tax_incl` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_shipping_tax_excl` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `carrier_tax_rate` DECIMAL(10, 3) NOT NULL DEFAULT '0.00',
  `total_wrapping` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_wrapping_tax_incl` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_wrapping_tax_excl` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `round_mode` tinyint(1) NOT NULL DEFAULT '2',
  `round_type` tinyint(1) NOT NULL DEFAULT '1',
  `invoice_number` int(10) unsigned NOT NULL DEFAULT '0',
  `delivery_number` int(10) unsigned NOT NULL DEFAULT '0',
  `invoice_date` datetime NOT NULL,
  `delivery_date` datetime NOT NULL,
  `valid` int(1) unsigned NOT NULL DEFAULT '0',
  `date_add` datetime NOT NULL,
  `date_upd` datetime NOT NULL,
  `note` text,
  PRIMARY KEY (`id_order`),
  KEY `reference` (`reference`),
  KEY `id_customer` (`id_customer`),
  KEY `id_cart` (`id_cart`),
  KEY `invoice_number` (`invoice_number`),
  KEY `id_carrier` (`id_carrier`),
  KEY `id_lang` (`id_lang`),
  KEY `id_currency` (`id_currency`),
  KEY `id_address_delivery` (`id_address_delivery`),
  KEY `id_address_invoice` (`id_address_invoice`),
  KEY `id_shop_group` (`id_shop_group`),
  KEY (`current_state`),
  KEY `id_shop` (`id_shop`),
  INDEX `date_add`(`date_add`),
  INDEX `invoice_date`(`invoice_date`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `ps_order_detail` (
  `id_order_detail` int(10) unsigned NOT NULL auto_increment,
  `id_order` int(10) unsigned NOT NULL,
  `id_order_invoice` int(11) DEFAULT NULL,
  `id_warehouse` int(10) unsigned DEFAULT '0',
  `id_shop` int(11) unsigned NOT NULL,
  `product_id` int(10) unsigned NOT NULL,
  `product_attribute_id` int(10) unsigned DEFAULT NULL,
  `id_customization` int(10) unsigned DEFAULT 0,
  `product_name` text NOT NULL,
  `product_quantity` int(10) unsigned NOT NULL DEFAULT '0',
  `product_quantity_in_stock` int(10) NOT NULL DEFAULT '0',
  `product_quantity_refunded` int(10) unsigned NOT NULL DEFAULT '0',
  `product_quantity_return` int(10) unsigned NOT NULL DEFAULT '0',
  `product_quantity_reinjected` int(10) unsigned NOT NULL DEFAULT '0',
  `product_price` decimal(20, 6) NOT NULL DEFAULT '0.000000',
  `reduction_percent` DECIMAL(5, 2) NOT NULL DEFAULT '0.00',
  `reduction_amount` DECIMAL(20, 6) NOT NULL DEFAULT '0.000000',
  `reduction_amount_tax_incl` DECIMAL(20, 6) NOT NULL DEFAULT '0.000000',
  `reduction_amount_tax_excl` DECIMAL(20, 6) NOT NULL DEFAULT '0.000000',
  `group_reduction` DECIMAL(5, 2) NOT NULL DEFAULT '0.00',
  `product_quantity_discount` decimal(20, 6) NOT NULL DEFAULT '0.000000',
  `product_ean13` varchar(13) DEFAULT NULL,
  `product_isbn` varchar(32) DEFAULT NULL,
  `product_upc` varchar(12) DEFAULT NULL,
  `product_mpn` varchar(40) DEFAULT NULL,
  `product_reference` varchar(64) DEFAULT NULL,
  `product_supplier_reference` varchar(64) DEFAULT NULL,
  `product_weight` DECIMAL(20, 6) NOT NULL,
  `id_tax_rules_group` INT(11) UNSIGNED DEFAULT '0',
  `tax_computation_method` tinyint(1) unsigned NOT NULL DEFAULT '0',
  `tax_name` varchar(16) NOT NULL,
  `tax_rate` DECIMAL(10, 3) NOT NULL DEFAULT '0.000',
  `ecotax` decimal(17, 6) NOT NULL DEFAULT '0.000000',
  `ecotax_tax_rate` DECIMAL(5, 3) NOT NULL DEFAULT '0.000',
  `discount_quantity_applied` TINYINT(1) NOT NULL DEFAULT '0',
  `download_hash` varchar(255) DEFAULT NULL,
  `download_nb` int(10) unsigned DEFAULT '0',
  `download_deadline` datetime DEFAULT NULL,
  `total_price_tax_incl` DECIMAL(20, 6) NOT NULL DEFAULT '0.000000',
  `total_price_tax_excl` DECIMAL(20, 6) NOT NULL DEFAULT '0.000000',
  `unit_price_tax_incl` DECIMAL(20, 6) NOT NULL DEFAULT '0.000000',
  `unit_price_tax_excl` DECIMAL(20, 6) NOT NULL DEFAULT '0.000000',
  `total_shipping_price_tax_incl` DECIMAL(20, 6) NOT NULL DEFAULT '0.000000',
  `total_shipping_price_tax_excl` DECIMAL(20, 6) NOT NULL DEFAULT '0.000000',
  `purchase_supplier_price` DECIMAL(20, 6) NOT NULL DEFAULT '0.000000',
  `original_product_price` DECIMAL(20, 6) NOT NULL DEFAULT '0.000000',
  `original_wholesale_price` DECIMAL(20, 6) NOT NULL DEFAULT '0.000000',
  `total_refunded_tax_excl` DECIMAL(20, 6) NOT NULL DEFAULT '0.000000',
  `total_refunded_tax_incl` DECIMAL(20, 6) NOT NULL DEFAULT '0.000000',
  PRIMARY KEY (`id_order_detail`),
  KEY `order_detail_order` (`id_order`),
  KEY `product_id` (
    `product_id`, `product_attribute_id`
  ),
  KEY `product_attribute_id` (`product_attribute_id`),
  KEY `id_tax_rules_group` (`id_tax_rules_group`),
  KEY `id_order_id_order_detail` (`id_order`, `id_order_detail`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `ps_order_state` (
  `id_order_state` int(10) UNSIGNED NOT NULL auto_increment,
  `invoice` tinyint(1) UNSIGNED DEFAULT '0',
  `send_email` tinyint(1) UNSIGNED NOT NULL DEFAULT '0',
  `module_name` VARCHAR(255) NULL DEFAULT NULL,
  `color` varchar(32) DEFAULT NULL,
  `unremovable` tinyint(1) UNSIGNED NOT NULL,
  `hidden` tinyint(1) UNSIGNED NOT NULL DEFAULT '0',
  `logable` tinyint(1) NOT NULL DEFAULT '0',
  `delivery` tinyint(1) UNSIGNED NOT NULL DEFAULT '0',
  `shipped` tinyint(1) UNSIGNED NOT NULL DEFAULT '0',
  `paid` tinyint(1) UNSIGNED NOT NULL DEFAULT '0',
  `pdf_invoice` tinyint(1) UNSIGNED NOT NULL default '0',
  `pdf_delivery` tinyint(1) UNSIGNED NOT NULL default '0',
  `deleted` tinyint(1) UNSIGNED NOT NULL DEFAULT '0',
  PRIMARY KEY (`id_order_state`),
  KEY `module_name` (`module_name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `ps_order_state_lang` (
  `id_order_state` int(10) unsigned NOT NULL,
  `id_lang` int(10) unsigned NOT NULL,
  `name` varchar(64) NOT NULL,
  `template` varchar(64) NOT NULL,
  PRIMARY KEY (`id_order_state`, `id_lang`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `ps_order_history` (
  `id_order_history` int(10) unsigned NOT NULL auto_increment,
  `id_employee` int(10) unsigned NOT NULL,
  `id_order` int(10) unsigned NOT NULL,
  `id_order_state` int(10) unsigned NOT NULL,
  `date_add` datetime NOT NULL,
  PRIMARY KEY (`id_order_history`),
  KEY `order_history_order` (`id_order`),
  KEY `id_employee` (`id_employee`),
  KEY `id_order_state` (`id_order_state`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `ps_order_invoice` (
  `id_order_invoice` int(11) UNSIGNED NOT NULL AUTO_INCREMENT,
  `id_order` int(11) NOT NULL,
  `number` int(11) NOT NULL,
  `delivery_number` int(11) NOT NULL,
  `delivery_date` datetime,
  `total_discount_tax_excl` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_discount_tax_incl` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_paid_tax_excl` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_paid_tax_incl` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_products` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_products_wt` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_shipping_tax_excl` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_shipping_tax_incl` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `shipping_tax_computation_method` int(10) unsigned NOT NULL,
  `total_wrapping_tax_excl` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `total_wrapping_tax_incl` decimal(20, 6) NOT NULL DEFAULT '0.00',
  `shop_address` text DEFAULT NULL,
  `note` text,
  `date_add` datetime NOT NULL,
  PRIMARY KEY (`id_order_invoice`),
  KEY `id_order` (`id_order`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `ps_order_payment` (
  `id_order_payment` INT NOT NULL auto_increment,
  `order_reference` VARCHAR(9),
  `id_currency` INT UNSIGNED NOT NULL,
  `amount` DECIMAL(20, 6) NOT NULL,
  `payment_method` varchar(255) NOT NULL,
  `conversion_rate` decimal(13, 6) NOT NULL DEFAULT 1,
  `transaction_id` VARCHAR(254) NULL,
  `card_number` VARCHAR(254) NULL,
  `card_brand` VARCHAR(254) NULL,
  `card_expiration` CHAR(7) NULL,
  `card_holder` VARCHAR(254) NULL,
  `date_add` DATETIME NOT NULL,
  `id_employee` INT NULL,
  PRIMARY KEY (`id_order_payment`),
  KEY `order_reference`(`order_reference`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE `ps_order_invoice_payment` (
  `id_order_invoice` int(11) unsigned NOT NULL,
  `id_order_payment` int(11) unsigned NOT NULL,
  `id_order` int(11) unsigned NOT NULL,
  PRIMARY KEY (
    `id_order_invoice`, `id_order_payment`
  ),
  KEY `order_payment` (`id_order_payment`),
  KEY `id_order` (`id_order`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- ===============================================================================================================
-- Seed
-- ===============================================================================================================

INSERT INTO `ps_lang`
  (`id_lang`, `name`, `active`, `iso_code`, `language_code`, `locale`, `date_format_lite`, `date_format_full`,
   `is_rtl`)
VALUES
  (1, 'English (English)', 1, 'en', 'en-us', 'en-US', 'm/d/Y', 'm/d/Y H:i:s', 0);

INSERT INTO `ps_currency`
  (`id_currency`, `name`, `iso_code`, `numeric_iso_code`, `precision`, `conversion_rate`, `deleted`, `active`,
   `unofficial`, `modified`)
VALUES
  (1, 'Euro', 'EUR', '978', 2, 1.000000, 0, 1, 0, 0);

-- PrestaShop's own country ids (install-dev/data/xml/country.xml). Zones: 1 Europe, 2 North America,
-- 7 Europe (non-EU). No ps_state rows in the demo, so contains_states is 0 everywhere.
INSERT INTO `ps_country`
  (`id_country`, `id_zone`, `id_currency`, `iso_code`, `call_prefix`, `active`, `contains_states`,
   `need_identification_number`, `need_zip_code`, `zip_code_format`, `display_tax_label`)
VALUES
  (1, 1, 0, 'DE', 49, 1, 0, 0, 1, 'NNNNN', 1),
  (3, 1, 0, 'BE', 32, 1, 0, 0, 1, 'NNNN', 1),
  (6, 1, 0, 'ES', 34, 1, 0, 1, 1, 'NNNNN', 1),
  (8, 1, 0, 'FR', 33, 1, 0, 0, 1, 'NNNNN', 1),
  (10, 1, 0, 'IT', 39, 1, 0, 0, 1, 'NNNNN', 1),
  (13, 1, 0, 'NL', 31, 1, 0, 0, 1, 'NNNN LL', 1),
  (17, 7, 0, 'GB', 44, 1, 0, 0, 1, '', 1),
  (21, 2, 0, 'US', 1, 1, 0, 0, 1, 'NNNNN', 0);

INSERT INTO `ps_country_lang` (`id_country`, `id_lang`, `name`)
VALUES
  (1, 1, 'Germany'),
  (3, 1, 'Belgium'),
  (6, 1, 'Spain'),
  (8, 1, 'France'),
  (10, 1, 'Italy'),
  (13, 1, 'Netherlands'),
  (17, 1, 'United Kingdom'),
  (21, 1, 'United States');

-- The default order states (PS_OS_*), flags as in /work/shared/domain.md.
INSERT INTO `ps_order_state`
  (`id_order_state`, `invoice`, `send_email`, `module_name`, `color`, `unremovable`, `hidden`, `logable`,
   `delivery`, `shipped`, `paid`, `pdf_invoice`, `pdf_delivery`, `deleted`)
VALUES
  (1, 0, 0, 'ps_checkpayment', '#34209E', 1, 0, 0, 0, 0, 0, 0, 0, 0),
  (2, 1, 0, NULL, '#3498D8', 1, 0, 1, 0, 0, 1, 1, 0, 0),
  (3, 1, 0, NULL, '#3498D8', 1, 0, 1, 1, 0, 1, 0, 0, 0),
  (4, 1, 0, NULL, '#01b887', 1, 0, 1, 1, 1, 1, 0, 0, 0),
  (5, 1, 0, NULL, '#01b887', 1, 0, 1, 1, 1, 1, 0, 0, 0),
  (6, 0, 0, NULL, '#2C3E50', 1, 0, 0, 0, 0, 0, 0, 0, 0),
  (7, 1, 0, NULL, '#ec2e15', 1, 0, 0, 0, 0, 0, 0, 0, 0),
  (8, 0, 0, NULL, '#8f0621', 1, 0, 0, 0, 0, 0, 0, 0, 0),
  (9, 1, 0, NULL, '#3498D8', 1, 0, 0, 0, 0, 1, 0, 0, 0),
  (10, 0, 0, 'ps_wirepayment', '#34209E', 1, 0, 0, 0, 0, 0, 0, 0, 0),
  (11, 1, 0, NULL, '#3498D8', 1, 0, 1, 0, 0, 1, 0, 0, 0),
  (12, 0, 0, NULL, '#34209E', 1, 0, 0, 0, 0, 0, 0, 0, 0),
  (13, 0, 0, 'ps_cashondelivery', '#34209E', 1, 0, 0, 0, 0, 0, 0, 0, 0);

INSERT INTO `ps_order_state_lang` (`id_order_state`, `id_lang`, `name`, `template`)
VALUES
  (1, 1, 'Awaiting check payment', 'cheque'),
  (2, 1, 'Payment accepted', 'payment'),
  (3, 1, 'Processing in progress', 'preparation'),
  (4, 1, 'Shipped', 'shipped'),
  (5, 1, 'Delivered', ''),
  (6, 1, 'Canceled', 'order_canceled'),
  (7, 1, 'Refunded', 'refund'),
  (8, 1, 'Payment error', 'payment_error'),
  (9, 1, 'On backorder (paid)', 'outofstock'),
  (10, 1, 'Awaiting bank wire payment', 'bankwire'),
  (11, 1, 'Remote payment accepted', 'payment'),
  (12, 1, 'On backorder (not paid)', 'outofstock'),
  (13, 1, 'Awaiting Cash On Delivery validation', 'cashondelivery');

-- 20 standard products. Prices excl. tax. The ERP seed (schemas/odoo.sql) has the same references, names,
-- prices and weights, under different ids.
INSERT INTO `ps_product`
  (`id_product`, `id_category_default`, `id_shop_default`, `id_tax_rules_group`, `reference`, `price`,
   `wholesale_price`, `weight`, `out_of_stock`, `active`, `indexed`, `visibility`, `product_type`, `state`,
   `date_add`, `date_upd`, `date_novelty`)
VALUES
  (1, 2, 1, 1, 'DEMO-001', 8.900000, 3.100000, 0.350000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (2, 2, 1, 1, 'DEMO-002', 19.500000, 7.200000, 0.400000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (3, 2, 1, 1, 'DEMO-003', 12.000000, 3.500000, 0.150000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (4, 2, 1, 1, 'DEMO-004', 24.900000, 9.800000, 0.100000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (5, 2, 1, 1, 'DEMO-005', 89.000000, 41.000000, 0.950000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (6, 2, 1, 1, 'DEMO-006', 9.900000, 2.400000, 0.050000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (7, 2, 1, 1, 'DEMO-007', 39.900000, 16.500000, 1.200000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (8, 2, 1, 1, 'DEMO-008', 6.500000, 1.900000, 0.200000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (9, 2, 1, 1, 'DEMO-009', 45.000000, 18.000000, 0.050000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (10, 2, 1, 1, 'DEMO-010', 59.000000, 22.000000, 0.120000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (11, 2, 1, 1, 'DEMO-011', 22.000000, 8.000000, 0.100000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (12, 2, 1, 1, 'DEMO-012', 14.900000, 4.600000, 0.150000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (13, 2, 1, 1, 'DEMO-013', 34.900000, 12.500000, 1.500000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (14, 2, 1, 1, 'DEMO-014', 79.000000, 35.000000, 0.700000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (15, 2, 1, 1, 'DEMO-015', 199.000000, 95.000000, 0.300000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (16, 2, 1, 1, 'DEMO-016', 15.500000, 5.000000, 0.250000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (17, 2, 1, 1, 'DEMO-017', 18.000000, 6.000000, 0.450000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (18, 2, 1, 1, 'DEMO-018', 11.900000, 4.000000, 0.200000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (19, 2, 1, 1, 'DEMO-019', 129.000000, 58.000000, 0.250000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00'),
  (20, 2, 1, 1, 'DEMO-020', 64.900000, 27.000000, 2.800000, 2, 1, 1, 'both', 'standard', 1,
   '2024-01-10 09:00:00', '2024-01-10 09:00:00', '2024-01-10 09:00:00');

INSERT INTO `ps_product_lang` (`id_product`, `id_shop`, `id_lang`, `link_rewrite`, `name`)
VALUES
  (1, 1, 1, 'ceramic-coffee-mug', 'Ceramic Coffee Mug'),
  (2, 1, 1, 'stainless-steel-water-bottle', 'Stainless Steel Water Bottle'),
  (3, 1, 1, 'cotton-tote-bag', 'Cotton Tote Bag'),
  (4, 1, 1, 'wireless-mouse', 'Wireless Mouse'),
  (5, 1, 1, 'mechanical-keyboard', 'Mechanical Keyboard'),
  (6, 1, 1, 'usb-c-charging-cable', 'USB-C Charging Cable'),
  (7, 1, 1, 'desk-lamp', 'Desk Lamp'),
  (8, 1, 1, 'dotted-notebook-a5', 'Dotted Notebook A5'),
  (9, 1, 1, 'fountain-pen', 'Fountain Pen'),
  (10, 1, 1, 'leather-wallet', 'Leather Wallet'),
  (11, 1, 1, 'wool-beanie', 'Wool Beanie'),
  (12, 1, 1, 'running-socks-3-pairs', 'Running Socks (3 pairs)'),
  (13, 1, 1, 'yoga-mat', 'Yoga Mat'),
  (14, 1, 1, 'bluetooth-speaker', 'Bluetooth Speaker'),
  (15, 1, 1, 'noise-cancelling-headphones', 'Noise Cancelling Headphones'),
  (16, 1, 1, 'phone-stand', 'Phone Stand'),
  (17, 1, 1, 'scented-candle', 'Scented Candle'),
  (18, 1, 1, 'herbal-tea-sampler', 'Herbal Tea Sampler'),
  (19, 1, 1, 'chef-knife', 'Chef Knife'),
  (20, 1, 1, 'cast-iron-skillet', 'Cast Iron Skillet');

INSERT INTO `ps_product_shop`
  (`id_product`, `id_shop`, `id_category_default`, `id_tax_rules_group`, `price`, `wholesale_price`, `active`,
   `indexed`, `visibility`, `date_add`, `date_upd`, `date_novelty`)
SELECT `id_product`, 1, `id_category_default`, `id_tax_rules_group`, `price`, `wholesale_price`, `active`,
       `indexed`, `visibility`, `date_add`, `date_upd`, `date_novelty`
FROM `ps_product`
ORDER BY `id_product`;

-- Sellable = physical = 40 + id_product, nothing reserved (no orders yet).
INSERT INTO `ps_stock_available`
  (`id_product`, `id_product_attribute`, `id_shop`, `id_shop_group`, `quantity`, `physical_quantity`,
   `reserved_quantity`, `depends_on_stock`, `out_of_stock`, `location`)
SELECT `id_product`, 0, 1, 1, 40 + `id_product`, 40 + `id_product`, 0, 0, 0, ''
FROM `ps_product`
ORDER BY `id_product`;

-- Customers 2 (bruno.keller@) and 4 (davide.rossi@) already exist as ERP partners with the same email.
INSERT INTO `ps_customer`
  (`id_customer`, `id_shop_group`, `id_shop`, `id_gender`, `id_default_group`, `id_lang`, `id_risk`, `company`,
   `firstname`, `lastname`, `email`, `passwd`, `last_passwd_gen`, `birthday`, `newsletter`, `optin`,
   `secure_key`, `active`, `is_guest`, `deleted`, `date_add`, `date_upd`)
VALUES
  (1, 1, 1, 2, 3, 1, 0, NULL, 'Alice', 'Martin', 'alice.martin@example.com',
   '$2y$10$Qm4xY2VhZ0JpRk1oT3l6Ue3u0b8bHwH2v7Jm1cZk8sXo6Lr5aQpTi', '2024-02-01 10:15:00', '1988-04-12', 1, 0,
   '3f1c2a9b8e7d6c5b4a39281706f5e4d3', 1, 0, 0, '2024-02-01 10:15:00', '2024-02-01 10:15:00'),
  (2, 1, 1, 1, 3, 1, 0, NULL, 'Bruno', 'Keller', 'bruno.keller@example.com',
   '$2y$10$Tk9wR3lMcVh6QmRnV2tUeO9pZc1nYs4qDf7Gh2Jk5Lm8Np0Rt3Vwy', '2024-02-03 14:40:00', '1979-11-02', 0, 0,
   '9a8b7c6d5e4f30211f0e9d8c7b6a5948', 1, 0, 0, '2024-02-03 14:40:00', '2024-02-03 14:40:00'),
  (3, 1, 1, 2, 3, 1, 0, NULL, 'Carmen', 'García', 'carmen.garcia@example.com',
   '$2y$10$Wm1QbGp4Sk5zT2VxUnVhYe2kLp7Qw9Er3Ty6Ui1Op4As8Df0Gh5Jz', '2024-02-05 08:05:00', '1992-07-23', 1, 1,
   '0f1e2d3c4b5a69788796a5b4c3d2e1f0', 1, 0, 0, '2024-02-05 08:05:00', '2024-02-05 08:05:00'),
  (4, 1, 1, 1, 3, 1, 0, 'Rossi Design', 'Davide', 'Rossi', 'davide.rossi@example.com',
   '$2y$10$ZXhhbXBsZVNhbHRWYWx1ZOa7Bc2De4Fg6Hi8Jk0Lm1No3Pq5Rs7Tu', '2024-02-08 17:30:00', '1985-01-30', 0, 0,
   '5b6c7d8e9f0a1b2c3d4e5f60718293a4', 1, 0, 0, '2024-02-08 17:30:00', '2024-02-08 17:30:00'),
  (5, 1, 1, 2, 3, 1, 0, NULL, 'Emma', 'Peeters', 'emma.peeters@example.com',
   '$2y$10$YW5vdGhlclNhbHRIZXJlLe5Vw7Xy9Za1Bc3De5Fg7Hi9Jk1Lm3No5', '2024-02-11 12:00:00', '1996-09-15', 1, 0,
   'c4d5e6f708192a3b4c5d6e7f8091a2b3', 1, 0, 0, '2024-02-11 12:00:00', '2024-02-11 12:00:00');

INSERT INTO `ps_address`
  (`id_address`, `id_country`, `id_state`, `id_customer`, `alias`, `company`, `lastname`, `firstname`,
   `address1`, `address2`, `postcode`, `city`, `phone`, `phone_mobile`, `date_add`, `date_upd`, `active`,
   `deleted`)
VALUES
  (1, 8, NULL, 1, 'My address', NULL, 'Martin', 'Alice', '12 Rue de Rivoli', NULL, '75004', 'Paris',
   '+33 1 42 68 53 00', '+33 6 12 34 56 78', '2024-02-01 10:20:00', '2024-02-01 10:20:00', 1, 0),
  (2, 1, NULL, 2, 'My address', NULL, 'Keller', 'Bruno', 'Friedrichstraße 123', NULL, '10117', 'Berlin',
   '+49 30 2345 6789', NULL, '2024-02-03 14:45:00', '2024-02-03 14:45:00', 1, 0),
  (3, 6, NULL, 3, 'My address', NULL, 'García', 'Carmen', 'Calle de Alcalá 45', '3º izquierda', '28014', 'Madrid',
   '+34 915 23 45 67', '+34 612 345 678', '2024-02-05 08:10:00', '2024-02-05 08:10:00', 1, 0),
  (4, 10, NULL, 4, 'My address', 'Rossi Design', 'Rossi', 'Davide', 'Via Torino 21', NULL, '20123', 'Milano',
   '+39 02 8645 1234', NULL, '2024-02-08 17:35:00', '2024-02-08 17:35:00', 1, 0),
  (5, 3, NULL, 5, 'My address', NULL, 'Peeters', 'Emma', 'Rue Neuve 88', NULL, '1000', 'Bruxelles',
   '+32 2 512 34 56', '+32 470 12 34 56', '2024-02-11 12:05:00', '2024-02-11 12:05:00', 1, 0);
