"""The ``features`` family (in progress): a main tracr program P and a bystander program Q merged into one
model, residual directions as nodes. ``merge.py`` builds the merged (and rotated) models."""
