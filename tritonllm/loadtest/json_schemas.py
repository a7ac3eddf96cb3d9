"""The structured-output workload: JSON schemas with the request that asks for each (the
guided-decoding benchmark and the `json_schema` load-test workload send them).

Twenty-two schemas covering what applications send: flat and nested objects, arrays of scalars
and of objects, enums, integers and numbers with bounds, booleans, nullable and optional
fields, ``anyOf``, ``$defs`` references and string patterns. Strings and arrays are bounded so
that a complete answer fits the benchmark's token budget: the benchmark measures whether guided
output is always valid, not how long a small model can ramble inside a string.
"""

from __future__ import annotations

from dataclasses import dataclass

S = {"type": "string", "maxLength": 24}  # a bounded string
NAME = {"type": "string", "minLength": 1, "maxLength": 24}


def _object(properties: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required,
            "additionalProperties": False}


@dataclass(frozen=True)
class SchemaTask:
    name: str
    prompt: str
    schema: dict

    def messages(self) -> list[dict]:
        """The chat request that asks for this schema's JSON."""
        return [{"role": "user", "content": f"{self.prompt} Reply in JSON."}]


SCHEMA_TASKS: tuple[SchemaTask, ...] = (
    SchemaTask("person", "Describe a fictional person.",
               _object({"name": NAME, "age": {"type": "integer", "minimum": 0, "maximum": 120}})),
    SchemaTask("city", "Name the largest city of France and its population.",
               _object({"city": NAME, "population": {"type": "integer", "minimum": 0}})),
    SchemaTask("yes_no", "Is the sky blue on a clear day?",
               _object({"answer": {"enum": ["yes", "no"]}, "confidence": {
                   "type": "number", "minimum": 0, "maximum": 1}})),
    SchemaTask("sentiment", "Classify the sentiment of: 'I loved this film.'",
               _object({"label": {"enum": ["positive", "negative", "neutral"]}})),
    SchemaTask("book", "Describe a famous novel.",
               _object({"title": NAME, "author": NAME,
                        "year": {"type": "integer", "minimum": 1000, "maximum": 2030},
                        "genres": {"type": "array", "items": S, "minItems": 1, "maxItems": 3}})),
    SchemaTask("address", "Give a postal address in Paris.",
               _object({"street": S, "city": NAME, "postcode": {
                   "type": "string", "pattern": "^[0-9]{5}$"}, "country": NAME})),
    SchemaTask("order", "Create a small shop order with two items.",
               _object({"order_id": {"type": "integer", "minimum": 1},
                        "items": {"type": "array", "minItems": 1, "maxItems": 3,
                                  "items": _object({"sku": S, "quantity": {
                                      "type": "integer", "minimum": 1, "maximum": 9}})},
                        "paid": {"type": "boolean"}})),
    SchemaTask("event", "Describe a concert.",
               _object({"name": NAME, "venue": _object({"name": NAME, "capacity": {
                   "type": "integer", "minimum": 10, "maximum": 100000}}),
                   "date": {"type": "string", "pattern": "^20[0-9]{2}-[01][0-9]-[0-3][0-9]$"}})),
    SchemaTask("weather", "Report today's weather in Rome.",
               _object({"city": NAME, "temperature_c": {"type": "number", "minimum": -50,
                                                        "maximum": 60},
                        "sky": {"enum": ["clear", "cloudy", "rain", "snow"]}})),
    SchemaTask("optional_fields", "Describe a pet; the nickname is optional.",
               _object({"species": {"enum": ["cat", "dog", "bird", "fish"]}, "name": NAME,
                        "nickname": S, "age": {"type": "integer", "minimum": 0,
                                               "maximum": 40}},
                       required=["species", "name"])),
    SchemaTask("nullable", "Give a user profile; the phone may be unknown.",
               _object({"user": NAME, "phone": {"anyOf": [
                   {"type": "string", "pattern": "^[0-9]{6,10}$"}, {"type": "null"}]}})),
    SchemaTask("tags", "List tags for a photo of a beach.",
               _object({"tags": {"type": "array", "items": {"type": "string", "maxLength": 12},
                                 "minItems": 2, "maxItems": 5}})),
    SchemaTask("matrix", "Give a 2 by 2 matrix of small integers.",
               _object({"rows": {"type": "array", "minItems": 2, "maxItems": 2, "items": {
                   "type": "array", "minItems": 2, "maxItems": 2, "items": {
                       "type": "integer", "minimum": -9, "maximum": 9}}}})),
    SchemaTask("point", "Give the coordinates of the Eiffel Tower.",
               _object({"lat": {"type": "number", "minimum": -90, "maximum": 90},
                        "lon": {"type": "number", "minimum": -180, "maximum": 180}})),
    SchemaTask("recipe", "Give a simple pancake recipe.",
               _object({"title": NAME, "servings": {"type": "integer", "minimum": 1,
                                                    "maximum": 12},
                        "steps": {"type": "array", "items": S, "minItems": 1, "maxItems": 3}})),
    SchemaTask("rating", "Rate the film Casablanca.",
               _object({"film": NAME, "stars": {"type": "integer", "minimum": 1,
                                                "maximum": 5}, "recommend": {"type": "boolean"}})),
    SchemaTask("employee", "Describe an employee and their manager.",
               {"$defs": {"person": _object({"name": NAME, "role": S})},
                **_object({"employee": {"$ref": "#/$defs/person"},
                           "manager": {"$ref": "#/$defs/person"}})}),
    SchemaTask("shape", "Describe a geometric shape.",
               _object({"shape": {"anyOf": [
                   _object({"kind": {"const": "circle"}, "radius": {
                       "type": "number", "minimum": 0, "maximum": 100}}),
                   _object({"kind": {"const": "square"}, "side": {
                       "type": "number", "minimum": 0, "maximum": 100}})]}})),
    SchemaTask("colors", "Name the colours of the French flag.",
               _object({"colors": {"type": "array", "maxItems": 3, "items": {
                   "enum": ["red", "white", "blue", "green", "yellow", "black"]}}})),
    SchemaTask("flight", "Describe a flight from Paris to New York.",
               _object({"flight": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2,4}$"},
                        "from": {"type": "string", "pattern": "^[A-Z]{3}$"},
                        "to": {"type": "string", "pattern": "^[A-Z]{3}$"},
                        "seats_left": {"type": "integer", "minimum": 0, "maximum": 400}})),
    SchemaTask("inventory", "Give a warehouse inventory with a few products.",
               _object({"warehouse": NAME, "products": {
                   "type": "array", "minItems": 1, "maxItems": 3,
                   "items": _object({"name": S, "stock": {"type": "integer", "minimum": 0,
                                                          "maximum": 1000},
                                     "price": {"type": "number", "minimum": 0,
                                               "maximum": 1000}})}})),
    SchemaTask("quiz", "Write one multiple-choice question about geography.",
               _object({"question": {"type": "string", "maxLength": 60},
                        "choices": {"type": "array", "items": S, "minItems": 3,
                                    "maxItems": 3},
                        "answer": {"type": "integer", "minimum": 0, "maximum": 2}})),
)
