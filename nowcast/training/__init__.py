"""LightningModules that train learned forecasters (kept apart from the networks)."""
