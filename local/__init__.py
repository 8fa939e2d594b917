"""The Function App on this machine, without Azure Functions Core Tools (dev-only, never deployed).

`local.host` does what the Functions host does for the app (index ``function_app``, run its async
functions on one long-lived event loop, hand them real binding objects); `local.demo` is
``make demo``: the whole job against the emulator.
"""
