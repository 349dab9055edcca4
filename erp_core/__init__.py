"""erpx ERP transaction core."""
