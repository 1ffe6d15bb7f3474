"""One version number for every data contract in `schemas/`."""

SCHEMA_VERSION = "1.0"
