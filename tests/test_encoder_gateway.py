"""The search service's gateway to the encoder, against a real encoder server: embeddings asked for
packed come back as the encoder's own, in order, with their fingerprints."""

from __future__ import annotations

import numpy as np

from lookalike.v1 import encoder_pb2, images_pb2
from search_service.encoder_gateway import EncoderGateway


def test_packed_embeddings_are_the_encoders_own_in_order(encoder_address, encoder, digit_pngs):
    ref = encoder.get_model().model
    images = [images_pb2.Image(encoded=png) for png in digit_pngs[:5]]
    stored = encoder_pb2.FINGERPRINT_KIND_STORED
    gateway = EncoderGateway(encoder_address, max_timeout_seconds=30, max_message_bytes=64 * 1024 * 1024)
    try:
        vectors, fingerprints = gateway.embed(ref, images, [f"items[{i}].image" for i in range(5)], 30, stored)
    finally:
        gateway.close()
    # the same request as repeated floats, the encoder's default
    plain = encoder.stub.Embed(encoder_pb2.EmbedRequest(model=ref, images=images, fingerprints=stored))
    assert vectors.dtype == np.float32 and vectors.shape == (5, plain.embedding_dim)
    assert np.array_equal(vectors, np.array([list(e.values) for e in plain.embeddings], dtype=np.float32))
    assert fingerprints == list(plain.fingerprints) and len(fingerprints) == 5

