"""Fleet statistics: device counts by status and product, ingest rate, alarms, last seen."""
