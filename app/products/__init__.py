"""Products: device types with a telemetry schema, living in a folder."""
