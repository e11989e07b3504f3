"""``GET /api/openapi``: the OpenAPI 3.1 document of both endpoints and the error body."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from .._contract import (
    ALLOWED_EXTENSIONS,
    API_KEY_HEADER,
    DEFAULT_FORMAT,
    MAX_ANGLE,
    MAX_DIMENSION,
    OUTPUT_FORMATS,
)
from ._membership import MAX_PERIOD_START
from ._state import json_response

_INTEGER: Final = {"type": "integer"}
# A flag is on when it is 1 or true (any case); any other value leaves it off.
_FLAG: Final = {"type": "string", "examples": ["1", "true"]}


def _ref(schema: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{schema}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _json_error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json(_ref("Error"))}


def _range(low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


def _object(properties: dict[str, Any], required: int | None = None) -> dict[str, Any]:
    """An object schema whose first ``required`` properties (all by default) are required."""
    return {"type": "object", "required": list(properties)[:required], "properties": properties}


def _boolean_field(description: str, default: bool) -> dict[str, Any]:
    return {
        "type": "string",
        "enum": ["true", "false", "1", "0"],
        "default": "true" if default else "false",
        "description": f"{description} Also 1/0, case-insensitive.",
    }


def _dimension(side: str) -> dict[str, Any]:
    description = f"Target {side}; keeps the aspect ratio unless exact_resize. 0 = unset."
    return {**_range(0, MAX_DIMENSION), "description": description}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_AUTH_ERRORS: Final = {
    "401": _json_error("invalid api key"),
    "403": _json_error("Email address not verified"),
}
_RMBG_FORM: Final = _object(
    {
        "image": {
            "type": "string",
            "contentMediaType": "application/octet-stream",
            "description": f"The input image: {', '.join(ALLOWED_EXTENSIONS)}; at most 50 MB "
            f"and {MAX_DIMENSION} px a side.",
        },
        "format": {
            "type": "string",
            "enum": [*OUTPUT_FORMATS, "jpg"],
            "default": DEFAULT_FORMAT,
            "description": "Output format, case-insensitive; jpg means jpeg.",
        },
        "w": _dimension("width"),
        "h": _dimension("height"),
        "exact_resize": _boolean_field("Force exactly w × h (may distort).", False),
        "mask": _boolean_field("Return only the alpha mask (grey).", False),
        "bg_color": {
            "type": "string",
            "description": "Solid background: #RGB, #RGBA, #RRGGBB, #RRGGBBAA or a CSS colour "
            "name.",
        },
        "angle": {
            "type": "number",
            "minimum": -MAX_ANGLE,
            "maximum": MAX_ANGLE,
            "default": 0,
            "description": "Rotate the result by this many degrees (counter-clockwise).",
        },
        "expand": _boolean_field("Pad the canvas so a rotated image is not cropped.", True),
    },
    required=1,
)
_RMBG: Final = {
    "post": {
        "operationId": "removeBackground",
        "summary": "Remove the background of an image",
        "security": [{}, {"ApiKey": []}],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": _RMBG_FORM,
                    "encoding": {"image": {"contentType": "image/*, application/octet-stream"}},
                }
            },
        },
        "responses": {
            "200": {
                "description": "The image, in the requested format.",
                "content": {
                    mime: {"schema": {"type": "string", "contentMediaType": mime}}
                    for mime in OUTPUT_FORMATS.values()
                },
            },
            "400": _json_error("A validation error (one, or several with details)."),
            **_AUTH_ERRORS,
            "429": {
                "description": "Too many requests (short-term), or the daily (anonymous) or "
                "monthly (keyed) limit. Carries Retry-After in seconds.",
                "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
                "content": _json(_ref("Error")),
            },
        },
    }
}

_CYCLE: Final = dict.fromkeys(
    ("periodStartUnix", "periodEndUnix", "appUsage", "apiUsage"), _INTEGER
)
_BILLING_CYCLE: Final = _object(
    {
        **_CYCLE,
        **dict.fromkeys(("includedCredits", "prepaidCredits", "usedIncludedCredits"), _INTEGER),
        "remainingIncludedCredits": {"type": "integer", "minimum": 0},
        "stripeBillingSynced": {"type": "boolean"},
    }
)
_USAGE: Final = _object(
    {
        "membership": {"type": "string"},
        **dict.fromkeys(("credits", "prepaidCredits", "app_usage", "api_usage"), _INTEGER),
        "billingCycle": _ref("BillingCycle"),
    },
    required=5,
)
_CYCLE_LIST: Final = _object({"billingCycles": {"type": "array", "items": _object(_CYCLE)}})

_MEMBERSHIP_USAGE: Final = {
    "get": {
        "operationId": "membershipUsage",
        "summary": "Plan, credits and usage by calendar month or billing cycle",
        "security": [{"ApiKey": []}],
        "parameters": [
            _query("year", _range(1, 9999), "UTC year."),
            _query("month", _range(1, 12), "UTC month."),
            _query(
                "periodStartUnix",
                _range(0, MAX_PERIOD_START),
                "Start of one billing period; not with year or month.",
            ),
            _query(
                "expand", {"type": "string"}, "Comma-separated; billing_cycle adds billingCycle."
            ),
            _query("includeBillingCycle", _FLAG, "Same as expand=billing_cycle."),
            _query("listBillingCycles", _FLAG, "List mode: only billingCycles, newest first."),
        ],
        "responses": {
            "200": {
                "description": "Usage, or the list of billing cycles in list mode.",
                "content": _json({"oneOf": [_ref("MembershipUsage"), _ref("BillingCycleList")]}),
            },
            "400": _json_error("Malformed parameters, or periodStartUnix with year or month."),
            **_AUTH_ERRORS,
        },
    }
}

_ERROR_SCHEMA: Final = _object(
    {
        "error": {"type": "string"},
        "status": _INTEGER,
        "details": {
            "type": "array",
            "minItems": 2,
            "items": _object({"field": {"type": "string"}, "message": {"type": "string"}}),
        },
    },
    required=2,
)


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the local server (and of the hosted API's contract)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "RemBG background removal API (local rembg-async server)",
            "version": "1.0.0",
        },
        "servers": [{"url": server_url or "https://api.rembg.com"}],
        "paths": {"/rmbg": _RMBG, "/api/membership-usage": _MEMBERSHIP_USAGE},
        "components": {
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}
            },
            "schemas": {
                "Error": _ERROR_SCHEMA,
                "MembershipUsage": _USAGE,
                "BillingCycle": _BILLING_CYCLE,
                "BillingCycleList": _CYCLE_LIST,
            },
        },
    }


async def handle_openapi(request: web.Request) -> web.Response:
    """Serve the document, with this server's own URL as its server."""
    return json_response(openapi_document(str(request.url.origin())))
