"""The reliability suite (a package, so its conftest does not shadow the core tests' ``conftest``)."""
