"""roomhub: a live backend for interactive web pages.

See DESIGN.md for the concepts (hub, room, session, runtime, executor,
document, backend) and ``roomhub serve --help`` to start.
"""

__version__ = "0.1.0"
