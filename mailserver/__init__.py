"""Composition root of the Phú Yên mail server: CLI, `serve` wiring, scheduler, web, reports."""

__version__ = "0.1.0"
