"""Helpers for tests, shipped with the package so plug-ins outside hwsearch can use them too."""

from hwsearch.testing.calibrate import calibrate_bn, firing_rates

__all__ = ["calibrate_bn", "firing_rates"]
