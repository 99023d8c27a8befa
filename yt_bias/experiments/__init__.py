"""Experiments: grids over configs that produce the tables of the README and the notebooks."""
