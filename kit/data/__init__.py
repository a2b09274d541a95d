"""What goes into a model: data sets and feeds, pre-processing, golden files and model
sources (factories, TorchScript, torch.export programs). Imports only kit.core."""
