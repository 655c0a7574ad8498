"""Moved to :mod:`radhe.nn.embedder`; kept so that code and models pickled before the move still load."""

from radhe.nn.embedder import CNNEmbedder

__all__ = ["CNNEmbedder"]
