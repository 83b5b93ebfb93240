"""Streaming verification scores, per lead time, with masked pixels excluded; reports."""
