"""A distributor world simulator that acts only through the erp_core services and keeps the
truth behind every outcome (see ``engine`` for the day, ``hazards`` for the drawn fates)."""
