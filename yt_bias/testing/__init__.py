"""Support for tests and benchmarks that the package ships: a local parameter-server cluster.

May import: anything in the package (it is an entry-point layer).
"""
