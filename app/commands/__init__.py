"""Device commands: products declare them, users send them, devices long-poll and answer."""
