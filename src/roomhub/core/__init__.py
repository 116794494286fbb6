"""The core every face stands on: errors and close codes, rooms and the room registry, the
bus, sessions with resume tokens, the context a face receives, the face shape and the one
loop that serves a room socket. It imports no face and not the hub."""
