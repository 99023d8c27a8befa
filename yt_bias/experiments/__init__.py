"""Experiments: grids over configs that produce the tables of the README and the notebooks.

May import: everything below the entry points.
"""
