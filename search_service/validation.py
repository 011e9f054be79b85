"""What a collection accepts, checked before anything reaches the log: a batch is all or nothing.

An upsert is checked whole. Each item needs an id of 1 to 512 bytes of UTF-8, unique within
the batch; a vector of the collection's dimension, finite, of length (Euclidean norm) at most
MAX_VECTOR_NORM, and (under cosine) not of zero length; at most 64 tags of 1 to 256 bytes (a
tag given twice counts once); a uri of at most 2048 bytes; a timestamp that fits int64 (as
the proto's); at most 32 numeric attributes, each named by 1 to 64 bytes of UTF-8 and finite;
a fingerprint only in a collection with find_copies. Every bad field of every item becomes a
FieldViolation at its path in the request (`items[3].vector`) with its own reason, and all of
them travel in ONE InvalidArgument, so a client fixes a batch in one round trip. A batch whose parts do not line
up (2 ids but 3 vectors, one string where a list belongs) cannot come from a request, only
from a Python caller; it is refused at once, at field `items`.

A query vector gets the same vector checks at field `vector`; k must be a positive integer
(the servicer applies the server's upper limit, max_k).

Why a length limit: float32 ends at 3.4e38, so a vector of finite values such as 3e38 scores
infinity (a dot product or squared distance past the largest float), and infinities make
rankings meaningless. With both lengths at most 1e18, |a.b| <= 1e36 and |a-b|^2 <= 4e36, far
inside float32, whatever the metric and whichever way a score is summed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from lookalike.errors import FieldViolation, InvalidArgument, Reason

if TYPE_CHECKING:
    from search_service.collection import CollectionSpec

MAX_ID_BYTES = 512
MAX_TAGS_PER_ITEM = 64
MAX_TAG_BYTES = 256
MAX_URI_BYTES = 2048
MAX_ATTRIBUTES_PER_ITEM = 32
MAX_ATTRIBUTE_NAME_BYTES = 64
MIN_COSINE_NORM = 1e-30  # below this a vector has no usable direction (and 1/norm overflows float32)
MAX_VECTOR_NORM = 1e18  # above this a score could overflow float32 (see the module docstring)
_SPELLED_OUT = 5  # violations quoted in the message; the details carry every one

# What is wrong with one field: the words after its path ("is empty"), and the reason.
Problem = tuple[str, Reason]


@dataclasses.dataclass(frozen=True)
class Batch:
    """An upsert that passed validation, ready for the log."""

    ids: list[str]
    vectors: np.ndarray  # (len(ids), dimension) float32, a copy of what the caller passed
    tags: list[tuple[str, ...]]  # without repeats
    uris: list[str]
    timestamps: list[int]  # 0: none
    fingerprints: list[bytes]  # b"": none
    attributes: list[dict[str, float]]  # {}: none


def validate_upsert(spec: CollectionSpec, ids, vectors, tags, uris, timestamps=None, fingerprints=None, attributes=None) -> Batch:
    """The batch, checked whole; InvalidArgument with a violation per bad field otherwise."""
    batch, bad = check_upsert(spec, ids, vectors, tags, uris, timestamps, fingerprints, attributes)
    if bad:
        violations = [v for position in sorted(bad) for v in bad[position]]
        listed = "; ".join(v.description for v in violations[:_SPELLED_OUT])
        more = f"; and {len(violations) - _SPELLED_OUT} more" if len(violations) > _SPELLED_OUT else ""
        verb = "item is" if len(bad) == 1 else "items are"
        raise InvalidArgument(
            f"{len(bad)} {verb} invalid: {listed}{more}",
            reason=violations[0].reason,
            violations=violations,
            metadata=_metadata(spec, [v.reason for v in violations]),
        )
    return batch


def check_upsert(
    spec: CollectionSpec, ids, vectors, tags, uris, timestamps=None, fingerprints=None, attributes=None
) -> tuple[Batch, dict[int, list[FieldViolation]]]:
    """(every item, cleaned; the violations of each bad item by position). For a caller that
    keeps the good items of a batch (UpsertStream); parts that do not line up still raise."""
    ids = _as_list(ids, "ids", Reason.ID_INVALID)
    count = len(ids)
    tag_lists = [()] * count if tags is None else _count(_as_list(tags, "tags", Reason.TAG_INVALID), count, "tag lists")
    uri_list = [""] * count if uris is None else _count(_as_list(uris, "uris", Reason.URI_INVALID), count, "uris")
    times = [0] * count if timestamps is None else _timestamps(_count(_as_list(timestamps, "timestamps", Reason.VALUE_OUT_OF_RANGE), count, "timestamps"))
    prints = [b""] * count if fingerprints is None else _fingerprints(spec, _count(list(fingerprints), count, "fingerprints"))
    attribute_maps = [{}] * count if attributes is None else _count(_as_list(attributes, "attributes", Reason.NAME_INVALID), count, "attribute maps")
    matrix, vector_problems = _vectors(spec, vectors, count)

    bad: dict[int, list[FieldViolation]] = {}
    first_position: dict[str, int] = {}
    clean_tags, clean_attributes = [], []
    for position in range(count):
        these_tags, tags_problem = _tags(tag_lists[position])
        clean_tags.append(these_tags)
        these_attributes, attributes_problem = _attributes(attribute_maps[position])
        clean_attributes.append(these_attributes)
        checked = (
            ("id", _id(ids[position], position, first_position)),
            ("vector", vector_problems[position]),
            ("tags", tags_problem),
            ("uri", _uri(uri_list[position])),
            ("attributes", attributes_problem),
        )
        for name, problem in checked:
            if problem is not None:
                field = f"items[{position}].{name}"
                bad.setdefault(position, []).append(FieldViolation(field, f"{field} {problem[0]}", problem[1]))
    return Batch(ids, matrix, clean_tags, uri_list, times, prints, clean_attributes), bad


def validate_query(spec: CollectionSpec, query, field: str = "vector") -> np.ndarray:
    """The query as float32 (dimension,); InvalidArgument at `field` otherwise."""
    if isinstance(query, np.ndarray) and query.dtype == np.float32 and query.shape == (spec.dimension,):
        # The common case in one dot product (float64: no float32 square overflows): finite, not
        # too long, not zero under cosine. NaN fails every comparison.
        wide = query.astype(np.float64)
        squared = float(wide @ wide)
        if squared <= MAX_VECTOR_NORM**2 and (squared >= MIN_COSINE_NORM**2 or spec.metric != "cosine"):
            return query
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32 becomes inf: refused below
            vector = np.asarray(query, dtype=np.float32)
    except (TypeError, ValueError):
        problem: Problem | None = ("is not a list of numbers", Reason.VALUES_NOT_FINITE)
    else:
        if vector.ndim != 1:
            problem = (f"must be one-dimensional, got shape {vector.shape}", Reason.DIMENSION_MISMATCH)
        else:
            problem = _length(spec, len(vector)) or _values(spec, vector[None])[0]
    if problem is not None:
        raise InvalidArgument(
            f"query vector {problem[0]}", reason=problem[1], field=field, metadata=_metadata(spec, [problem[1]])
        )
    return vector


def validate_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgument(f"k must be a positive integer, got {k!r}", reason=Reason.K_OUT_OF_RANGE, field="k")
    return int(k)


def validate_ids(ids) -> list[str]:
    """Ids to delete: a list of strings (ids that do not exist are the collection's business)."""
    ids = _as_list(ids, "ids", Reason.ID_INVALID, field="ids")
    for position, item_id in enumerate(ids):
        if not isinstance(item_id, str):
            field = f"ids[{position}]"
            raise InvalidArgument(
                f"{field} must be a string, got {type(item_id).__name__}", reason=Reason.ID_INVALID, field=field
            )
    return ids


def _metadata(spec: CollectionSpec, reasons: list[Reason]) -> dict[str, object]:
    """The ErrorInfo metadata of a refusal: the collection, and the limit a too-long vector broke."""
    if Reason.VALUES_TOO_LARGE in reasons:
        return {"collection": spec.name, "limit": f"{MAX_VECTOR_NORM:.0e}"}
    return {"collection": spec.name}


def describe_id(item_id: str) -> str:
    """An id for a message: quoted, and shortened when long."""
    return repr(item_id if len(item_id) <= 64 else item_id[:61] + "...")


# --- the parts of a batch -----------------------------------------------------------------------


def _as_list(values, name: str, reason: Reason, *, field: str = "items") -> list:
    """`values` as a list; refused when it is one string or not a sequence at all."""
    if isinstance(values, str):
        raise InvalidArgument(f"{name} must be a list, not one string", reason=reason, field=field)
    try:
        return list(values)
    except TypeError:
        message = f"{name} must be a list, got {type(values).__name__}"
        raise InvalidArgument(message, reason=reason, field=field) from None


def _timestamps(values: list) -> list[int]:
    """Integers that fit int64, as Item.timestamp; only a Python caller can send others."""
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not -(2**63) <= value < 2**63:
            raise InvalidArgument(f"timestamps must be 64-bit integers, got {value!r}", reason=Reason.VALUE_OUT_OF_RANGE, field="items")
    return [int(v) for v in values]


def _fingerprints(spec: CollectionSpec, values: list) -> list[bytes]:
    """Bytes, in a collection that keeps them; the servicer makes them, so no reason of their own."""
    assert all(isinstance(v, bytes) for v in values), "fingerprints are copy_detection's bytes"
    assert spec.find_copies or not any(values), "only a collection with find_copies keeps fingerprints"
    return values


def _count(values, count: int, name: str):
    """`values`, refused unless there is one per id."""
    if len(values) != count:
        message = f"got {count} ids but {len(values)} {name}"
        raise InvalidArgument(message, reason=Reason.REQUIRED_FIELD_MISSING, field="items")
    return values


def _vectors(spec: CollectionSpec, vectors, count: int) -> tuple[np.ndarray, list[Problem | None]]:
    """The vectors as a (count, dimension) float32 copy, and each one's problem (zeros where it has one)."""
    dimension = spec.dimension
    if isinstance(vectors, np.ndarray) and vectors.ndim == 2 and vectors.dtype.kind in "biuf":
        _count(vectors, count, "vectors")
        if vectors.shape[1] != dimension:
            return np.zeros((count, dimension), np.float32), [_length(spec, vectors.shape[1])] * count
        with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf: refused below
            matrix = vectors.astype(np.float32)
        return matrix, _values(spec, matrix)
    # A list of rows (or an array of another shape or type): row by row, so each bad one is named.
    rows = _count(_as_list(vectors, "vectors", Reason.REQUIRED_FIELD_MISSING), count, "vectors")
    matrix = np.zeros((count, dimension), np.float32)
    not_numbers = ("is not a list of numbers", Reason.VALUES_NOT_FINITE)
    problems: list[Problem | None] = []
    for position, row in enumerate(rows):
        problem = _length(spec, len(row)) if hasattr(row, "__len__") and not isinstance(row, str) else not_numbers
        if problem is None:
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    converted = np.asarray(row, dtype=np.float32)
            except (TypeError, ValueError):
                converted = None
            if converted is None or converted.shape != (dimension,):  # strings, nested lists
                problem = not_numbers
            else:
                matrix[position] = converted
        problems.append(problem)
    return matrix, [shape or value for shape, value in zip(problems, _values(spec, matrix))]


def _length(spec: CollectionSpec, length: int) -> Problem | None:
    if length == 0:
        return "is empty", Reason.REQUIRED_FIELD_MISSING
    if length != spec.dimension:
        return f"has dimension {length}, collection '{spec.name}' has {spec.dimension}", Reason.DIMENSION_MISMATCH
    return None


def _values(spec: CollectionSpec, matrix: np.ndarray) -> list[Problem | None]:
    """Each row's problem with its values: not finite, too long, or of zero length under cosine."""
    finite = np.isfinite(matrix).all(axis=1)
    with np.errstate(invalid="ignore", over="ignore"):  # rows with inf or NaN are refused as such
        norms = np.linalg.norm(matrix.astype(np.float64), axis=1)  # float64: 3e38 squared still fits
    problems: list[Problem | None] = []
    for ok, norm in zip(finite.tolist(), norms.tolist()):
        if not ok:
            problems.append(("contains NaN or infinity", Reason.VALUES_NOT_FINITE))
        elif norm > MAX_VECTOR_NORM:
            problems.append(
                (
                    f"has length {norm:.3g}, over the limit of {MAX_VECTOR_NORM:.0e}: its scores would overflow float32",
                    Reason.VALUES_TOO_LARGE,
                )
            )
        elif spec.metric == "cosine" and norm < MIN_COSINE_NORM:
            problems.append(
                (
                    f"has zero norm; collection '{spec.name}' uses cosine similarity, which needs a direction",
                    Reason.VECTOR_ZERO_NORM,
                )
            )
        else:
            problems.append(None)
    return problems


def _id(item_id, position: int, first_position: dict[str, int]) -> Problem | None:
    """Records the id in `first_position` when it is valid and new."""
    if not isinstance(item_id, str):
        return f"must be a string, got {type(item_id).__name__}", Reason.ID_INVALID
    if not item_id:
        return "is empty", Reason.ID_INVALID
    length = _utf8_length(item_id)
    if length is None:
        return "is not valid UTF-8 text", Reason.ID_INVALID
    if length > MAX_ID_BYTES:
        return f"is {length} bytes, at most {MAX_ID_BYTES} allowed", Reason.ID_INVALID
    if item_id in first_position:
        return (
            f"{describe_id(item_id)} repeats items[{first_position[item_id]}].id; ids must be unique within a batch",
            Reason.ID_DUPLICATE,
        )
    first_position[item_id] = position
    return None


def _tags(tags) -> tuple[tuple[str, ...], Problem | None]:
    """(the tags without repeats, their problem)."""
    if isinstance(tags, str):
        return (), ("must be a list of strings, not one string", Reason.TAG_INVALID)
    try:
        tags = tuple(tags)
    except TypeError:
        return (), ("must be a list of strings", Reason.TAG_INVALID)
    for tag in tags:
        if not isinstance(tag, str):
            return (), (f"must hold strings, got {type(tag).__name__}", Reason.TAG_INVALID)
    tags = tuple(dict.fromkeys(tags))  # a tag carried twice is carried once
    if len(tags) > MAX_TAGS_PER_ITEM:
        return tags, (f"holds {len(tags)} tags, at most {MAX_TAGS_PER_ITEM} allowed", Reason.TAG_INVALID)
    for tag in tags:
        length = _utf8_length(tag)
        if length is None:
            return tags, ("holds a tag that is not valid UTF-8 text", Reason.TAG_INVALID)
        if not 1 <= length <= MAX_TAG_BYTES:
            return tags, (f"holds a tag of {length} bytes; tags are 1 to {MAX_TAG_BYTES} bytes", Reason.TAG_INVALID)
    return tags, None


def _attributes(attributes) -> tuple[dict[str, float], Problem | None]:
    """(the attributes as a plain dict of floats, their problem)."""
    if not isinstance(attributes, Mapping):
        return {}, ("must map names to numbers", Reason.NAME_INVALID)
    if len(attributes) > MAX_ATTRIBUTES_PER_ITEM:
        return {}, (f"holds {len(attributes)} attributes, at most {MAX_ATTRIBUTES_PER_ITEM} allowed", Reason.NAME_INVALID)
    clean = {}
    for name, value in attributes.items():
        length = _utf8_length(name) if isinstance(name, str) else None
        if length is None or not 1 <= length <= MAX_ATTRIBUTE_NAME_BYTES:
            return {}, (f"has a name that is not 1 to {MAX_ATTRIBUTE_NAME_BYTES} bytes of UTF-8 text", Reason.NAME_INVALID)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
            return {}, (f"{name!r} is {value!r}, not a finite number", Reason.VALUES_NOT_FINITE)
        clean[name] = float(value)
    return clean, None


def _uri(uri) -> Problem | None:
    if not isinstance(uri, str):
        return f"must be a string, got {type(uri).__name__}", Reason.URI_INVALID
    length = _utf8_length(uri)
    if length is None:
        return "is not valid UTF-8 text", Reason.URI_INVALID
    if length > MAX_URI_BYTES:
        return f"is {length} bytes, at most {MAX_URI_BYTES} allowed", Reason.URI_INVALID
    return None


def _utf8_length(text: str) -> int | None:
    """The UTF-8 length in bytes; None for text that has no UTF-8 form (lone surrogates)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None
