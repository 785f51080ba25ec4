"""Code the tests share (files, data, checks, configs, servers, browsers); fixtures live in conftest.py.

Importable as `helpers` from any test folder: pyproject.toml puts tests/ on pytest's pythonpath.
"""
