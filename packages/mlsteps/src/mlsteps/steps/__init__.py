"""The built-in steps. Each module imports its backend only inside ``run``."""
