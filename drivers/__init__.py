"""Hardware drivers. Each family lives in its own module; the gateway finds them via the registry."""
