"""The store (WooCommerce): its webhook payloads and signatures, product and order snapshots, catalog sync."""
