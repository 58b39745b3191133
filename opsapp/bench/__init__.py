"""Benchmarks of the engine on the demo (`manage.py bench`): scenarios by name in `opsapp.bench.scenarios`.

An app only for its management command; nothing is imported here, so the app registry can load it.
"""
