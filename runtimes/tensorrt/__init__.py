"""TensorRT: building engines (with their manifest and calibration) and running them."""
