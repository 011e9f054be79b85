"""Lookalike: search by image. The client package: API stubs, typed clients, preprocessing, CLI."""

from lookalike.client import EncoderClient, ItemToUpsert, Neighbor, SearchClient

__all__ = ["EncoderClient", "ItemToUpsert", "Neighbor", "SearchClient"]
