"""Taking models to the device: bundles and the device check (kit doctor)."""
