"""The command line: one Typer module per verb, discovered through the `facekp.commands` entry points.

Modules here import only typer, click and the standard library at module level (ruff TID253).
"""
