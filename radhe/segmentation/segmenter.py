"""Moved to :mod:`radhe.nn.segmenter`; kept so that code and models pickled before the move still load."""

from radhe.nn.segmenter import HematomaSegmenter, default_cache_dir, fallback_region, postprocess

__all__ = ["HematomaSegmenter", "default_cache_dir", "fallback_region", "postprocess"]
