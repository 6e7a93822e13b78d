"""Hardware drivers: one module per device family, found by the gateway's registry."""
