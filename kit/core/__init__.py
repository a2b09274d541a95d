"""The lowest layer: errors, tensor specs, safe file writing, provenance, the environment
record and text formatting. Imports nothing else from the kit."""
