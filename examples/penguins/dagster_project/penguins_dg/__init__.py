"""The penguins pipeline as a dg project: see defs/penguins/defs.yaml."""
