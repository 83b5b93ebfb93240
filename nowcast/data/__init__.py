"""Stores -> windows as tensors: transforms, window index, Dataset, DataModule, synthetic events."""
