"""Just enough of the Kubernetes protobuf encoding to read what kubectl sends for built-in types.

client-go (and so kubectl >= 1.31) sends typed, built-in objects as ``application/vnd.kubernetes.protobuf``:
the magic ``k8s\\0`` followed by a ``runtime.Unknown`` message whose ``raw`` field is the object.  The lab
answers in JSON (kubectl accepts it), but must read these request bodies.  Only the types kubectl creates
here are described (field numbers from k8s.io/api ``generated.proto``); anything else answers 415.
"""

import base64

MAGIC = b"k8s\x00"

# Schemas: field number -> (json name, kind).  Kinds: "string", "bytes", "int", "bool", a nested schema
# (dict), ("map", value kind), ("repeated", kind).
OBJECT_META = {1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"),
               11: ("labels", ("map", "string")), 12: ("annotations", ("map", "string"))}
SCHEMAS = {
    ("v1", "Namespace"): {1: ("metadata", OBJECT_META)},
    ("v1", "ServiceAccount"): {1: ("metadata", OBJECT_META), 4: ("automountServiceAccountToken", "bool")},
    ("v1", "Secret"): {1: ("metadata", OBJECT_META), 2: ("data", ("map", "bytes")), 3: ("type", "string"),
                       4: ("stringData", ("map", "string")), 5: ("immutable", "bool")},
    ("v1", "ConfigMap"): {1: ("metadata", OBJECT_META), 2: ("data", ("map", "string")),
                          3: ("binaryData", ("map", "bytes")), 4: ("immutable", "bool")},
    ("authentication.k8s.io/v1", "TokenRequest"): {
        1: ("metadata", OBJECT_META),
        2: ("spec", {1: ("audiences", ("repeated", "string")), 4: ("expirationSeconds", "int")})},
}
UNKNOWN = {1: ("typeMeta", {1: ("apiVersion", "string"), 2: ("kind", "string")}), 2: ("raw", "bytes")}


class UnsupportedMessage(ValueError):
    pass


def _varint(data, pos):
    result = shift = 0
    while True:
        if pos >= len(data):
            raise UnsupportedMessage("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data):
    """Wire-format fields of one message: [(number, value)], value an int or bytes."""
    pos, out = 0, []
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire_type == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire_type == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise UnsupportedMessage("wire type %d" % wire_type)
        out.append((number, value))
    return out


def _scalar(kind, value):
    if kind == "string":
        return value.decode("utf-8")
    if kind == "bytes":
        return base64.b64encode(value).decode()  # JSON form of []byte
    if kind == "int":
        return int(value)
    if kind == "bool":
        return bool(value)
    return decode_message(value, kind)


def decode_message(data, schema):
    obj = {}
    for number, value in fields(data):
        if number not in schema:
            continue  # fields the lab does not use
        name, kind = schema[number]
        if isinstance(kind, tuple) and kind[0] == "map":
            entry = dict(fields(value))
            obj.setdefault(name, {})[entry.get(1, b"").decode()] = _scalar(kind[1], entry.get(2, b""))
        elif isinstance(kind, tuple) and kind[0] == "repeated":
            obj.setdefault(name, []).append(_scalar(kind[1], value))
        elif value != b"":  # gogo-protobuf writes empty strings; JSON omits them
            obj[name] = _scalar(kind, value)
    return obj


def decode(body):
    """A protobuf request body -> the JSON-shaped object, or UnsupportedMessage."""
    if not body.startswith(MAGIC):
        raise UnsupportedMessage("missing the k8s protobuf magic prefix")
    unknown = decode_message(body[len(MAGIC):], UNKNOWN)
    type_meta = unknown.get("typeMeta") or {}
    key = (type_meta.get("apiVersion"), type_meta.get("kind"))
    if key not in SCHEMAS:
        raise UnsupportedMessage("%s %s" % key)
    obj = decode_message(base64.b64decode(unknown.get("raw", "")), SCHEMAS[key])
    obj["apiVersion"], obj["kind"] = key
    return obj
