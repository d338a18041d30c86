"""The stdb server: hosts databases, speaks the CBOR protocol over websockets."""
