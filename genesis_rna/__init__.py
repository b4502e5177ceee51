"""Genesis RNA: data stages and multi-task pretraining for RNA foundation models."""

__version__ = "0.1.0"
