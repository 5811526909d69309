"""Sensorhub: a self-hostable backend for connected devices."""

__version__ = "0.1.0"
