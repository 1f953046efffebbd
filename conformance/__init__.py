"""segur-bench: conformance and referencing test bench for the Ségur "services socles"."""

__version__ = "0.1.0"
