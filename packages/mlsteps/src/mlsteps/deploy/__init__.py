"""Serving targets of the ``deploy`` step: the contract (``base``) and one module per platform."""
