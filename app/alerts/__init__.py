"""Alerts: rules on readings and presence, alarms with a lifecycle, and notifications."""
