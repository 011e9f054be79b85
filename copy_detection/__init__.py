"""Finding the original of an edited picture: cropped, captioned, mirrored, turned, stamped with a logo,
letterboxed, shrunk and re-encoded, recoloured, or several of these at once.

An embedding alone cannot tell a copy from a look-alike (two photos of the same beach are close;
so is a crop of one of them). Pixels can: a copy shares them with its original, up to a transform.
So the search works in stages, each cheap enough for the candidates the stage before leaves:

1. hash (`hash_index`): pHash within a few bits finds exact and re-encoded copies in a linear scan.
2. embedding candidates: the collection's nearest neighbours (ScaNN, elsewhere) add the edited copies
   whose hash changed; hash and embedding candidates together are a few dozen.
3. geometric verification (`verification`): RootSIFT matches with Lowe's ratio test, then one
   similarity transform by RANSAC, tried as is and mirrored. Its inliers say whether the pair shares
   pixels, and the transform says where: the query's region in the original, and back.
4. verdict (`verdict`): exact copy, edited copy, similar or unrelated, with the evidence that decided,
   from thresholds that `lookalike eval` calibrates per collection.

Featureless pictures (tiny or flat: the 28x28 MNIST digits, a single-colour square) have too few
keypoints for verification to mean anything (`Fingerprint.featureless`). For them the embedding
decides whether a pair is a copy, at a stricter threshold than for "similar".

What a collection stores per item is a `features.Fingerprint`: the hash, at most 200 keypoints with
their descriptors (<= 27,200 bytes) and a JPEG thumbnail for drawing the edits (`edit_picture`).
The figures behind every choice are in benchmarks/RESULTS.md (`python -m benchmarks.copy_verification`).

Imports: numpy, OpenCV, Pillow, imagehash and lookalike's preprocessing only; no torch, no servers.
"""
