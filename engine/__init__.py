"""opctl: a declarative operator for distributed systems.

Everything opctl knows about a system lives in a schema-validated YAML config; this package is
the engine that interprets it: observe -> evaluate -> tickets -> diagnose -> gate -> act -> verify.
"""

__version__ = "0.1.0"
