"""Simulated CS800 controllers, the CS800 caproto IOC and a simulated solenoid valve bank."""
