"""OTLP/HTTP trace exports off the wire: protobuf or OTLP/JSON to an
``ExportTraceServiceRequest``, with errors naming the field at fault.

OTLP/JSON differs from protobuf's canonical JSON mapping in one way that matters: trace and
span ids are hex strings, where protobuf's JSON parser reads ``bytes`` fields as base64. The ids
are therefore checked and turned into base64 here before ``json_format.ParseDict`` sees them.
Everything else follows the canonical mapping (lowerCamelCase or original field names, enums as
numbers or names, 64-bit integers as strings or numbers); unknown fields are ignored, as OTLP
asks of receivers.

Both encodings end in the same check of ids (a 16-byte trace id, an 8-byte span id, both not
all zero; a parent span id empty or 8 bytes) and a bound on the number of spans. Errors are
:class:`~auto_dev.ValidationError` naming the field (``resourceSpans[0].scopeSpans[0].spans[3]
.traceId``); protobuf's own errors are mapped here and go no further.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from google.protobuf import json_format, message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from auto_dev._exceptions import ValidationError

#: The id fields OTLP/JSON writes as hex, by their JSON names (both spellings are accepted).
_SPAN_IDS = {"traceId": 16, "trace_id": 16, "spanId": 8, "span_id": 8,
             "parentSpanId": 8, "parent_span_id": 8}
_LINK_IDS = {"traceId": 16, "trace_id": 16, "spanId": 8, "span_id": 8}
_CAMEL = {"trace_id": "traceId", "span_id": "spanId", "parent_span_id": "parentSpanId"}
#: Protobuf's parse errors name fields ("Failed to parse spans field: ..."), not indexes.
_FAILED_FIELD = re.compile(r"Failed to parse \w+ field: ")


class TooManySpansError(ValidationError):
    """An export holding more spans than the service takes in one request."""


def decode_protobuf(raw: bytes, *, max_spans: int) -> ExportTraceServiceRequest:
    """An export sent as ``application/x-protobuf``."""
    try:
        request = ExportTraceServiceRequest.FromString(raw)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise ValidationError("body", "is not an OTLP ExportTraceServiceRequest in protobuf "
                              f"({exc or type(exc).__name__})") from None
    check_request(request, max_spans=max_spans)
    return request


def decode_otlp_json(value: Any, *, max_spans: int) -> ExportTraceServiceRequest:
    """An export sent as ``application/json`` (OTLP/JSON), already parsed as JSON."""
    if not isinstance(value, dict):
        raise ValidationError("body", "must be a JSON object (an ExportTraceServiceRequest), "
                              f"got {_json_type(value)}")
    spans = list(_json_spans(value))
    if len(spans) > max_spans:
        raise _too_many(len(spans), max_spans)
    for path, span in spans:
        _hex_ids_to_base64(span, _SPAN_IDS, path)
        links = span.get("links")
        if isinstance(links, list):
            for index, link in enumerate(links):
                if isinstance(link, dict):
                    _hex_ids_to_base64(link, _LINK_IDS, f"{path}.links[{index}]")
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(value, request, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError):
        field, problem = _locate(value, ExportTraceServiceRequest, "")
        raise ValidationError(field or "body", problem) from None
    check_request(request, max_spans=max_spans)
    return request


def check_request(request: ExportTraceServiceRequest, *, max_spans: int) -> None:
    """The bound on spans and the ids every span needs."""
    count = sum(len(scope.spans) for resource in request.resource_spans
                for scope in resource.scope_spans)
    if count > max_spans:
        raise _too_many(count, max_spans)
    for r, resource in enumerate(request.resource_spans):
        for s, scope in enumerate(resource.scope_spans):
            for k, span in enumerate(scope.spans):
                path = f"resourceSpans[{r}].scopeSpans[{s}].spans[{k}]"
                _check_id(f"{path}.traceId", span.trace_id, 16)
                _check_id(f"{path}.spanId", span.span_id, 8)
                if span.parent_span_id:
                    _check_id(f"{path}.parentSpanId", span.parent_span_id, 8)


def _check_id(field: str, value: bytes, size: int) -> None:
    if len(value) != size:
        got = "it is missing" if not value else f"got {len(value)} bytes"
        raise ValidationError(field, f"must be an id of {size} bytes ({size * 2} hex digits "
                              f"in OTLP/JSON); {got}")
    if not any(value):
        raise ValidationError(field, "must not be all zero (an invalid id)")


def _too_many(count: int, max_spans: int) -> TooManySpansError:
    return TooManySpansError("resourceSpans", f"hold {count} spans; one export may hold at "
                             f"most {max_spans} (server_max_batch)")


def _json_spans(value: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every span object of an OTLP/JSON export with its path; the shape is checked on the way
    (a list where a list belongs, objects in it)."""
    found: list[tuple[str, dict[str, Any]]] = []
    for r, resource in enumerate(_json_list(value, ("resourceSpans", "resource_spans"), "")):
        r_path = f"resourceSpans[{r}]"
        _json_object(resource, r_path)
        for s, scope in enumerate(_json_list(resource, ("scopeSpans", "scope_spans"), r_path)):
            s_path = f"{r_path}.scopeSpans[{s}]"
            _json_object(scope, s_path)
            for k, span in enumerate(_json_list(scope, ("spans",), s_path)):
                path = f"{s_path}.spans[{k}]"
                _json_object(span, path)
                found.append((path, span))
    return found


def _json_list(parent: dict[str, Any], names: tuple[str, ...], path: str) -> list[Any]:
    for name in names:
        if name in parent and parent[name] is not None:
            items = parent[name]
            if not isinstance(items, list):
                field = f"{path}.{names[0]}" if path else names[0]
                raise ValidationError(field, f"must be a JSON array, got {_json_type(items)}")
            return items
    return []


def _json_object(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise ValidationError(path, f"must be a JSON object, got {_json_type(value)}")


def _hex_ids_to_base64(holder: dict[str, Any], sizes: dict[str, int], path: str) -> None:
    for name, size in sizes.items():
        if name not in holder:
            continue
        field = f"{path}.{_CAMEL.get(name, name)}"
        text = holder[name]
        if text is None or text == "":
            holder[name] = ""
            continue
        if not isinstance(text, str):
            raise ValidationError(field, f"must be a hex string, got {_json_type(text)}")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValidationError(field, f"must be {size * 2} hex digits, got {text[:80]!r}"
                                  ) from None
        if len(raw) != size:
            raise ValidationError(field, f"must be {size * 2} hex digits, got {len(text)} "
                                  "characters")
        holder[name] = base64.b64encode(raw).decode("ascii")


def _locate(value: Any, cls: type[Message], path: str) -> tuple[str, str]:
    """The path of the first part of ``value`` that ``cls`` refuses, and why. Runs only once
    a whole export failed to parse, message by message, so that the index in every list is
    known (protobuf's message names fields only)."""
    if not isinstance(value, dict):
        return path, f"must be a JSON object, got {_json_type(value)}"
    descriptor = cls.DESCRIPTOR
    for key, item in value.items():
        field = descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(key)
        if field is None:
            continue  # ignored by the parser too
        here = f"{path}.{key}" if path else key
        if field.message_type is None or item is None:
            problem = _parse_problem({key: item}, cls)
            if problem is not None:
                return here, problem
            continue
        sub = message_factory.GetMessageClass(field.message_type)
        if field.message_type.GetOptions().map_entry:
            problem = _parse_problem({key: item}, cls)
            if problem is not None:
                return here, problem
            continue
        if _is_repeated(field):
            if not isinstance(item, list):
                return here, f"must be a JSON array, got {_json_type(item)}"
            for index, element in enumerate(item):
                if _parse_problem(element, sub) is not None:
                    return _locate(element, sub, f"{here}[{index}]")
        elif _parse_problem(item, sub) is not None:
            return _locate(item, sub, here)
    return path, _parse_problem(value, cls) or "is not valid OTLP/JSON"


def _is_repeated(field: Any) -> bool:
    flag = getattr(field, "is_repeated", None)
    if isinstance(flag, bool):
        return flag
    return bool(field.label == field.LABEL_REPEATED)


def _parse_problem(value: Any, cls: type[Message]) -> str | None:
    try:
        json_format.ParseDict(value, cls(), ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError,
            binascii.Error) as exc:
        message = _FAILED_FIELD.sub("", str(exc)).rstrip(".")
        message = message.split(" at ", 1)[0] if " at " in message else message
        return f"is not a valid value here ({message})"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)
