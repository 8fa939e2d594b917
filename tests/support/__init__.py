"""What the tests share: the emulator harness, the engine's in-memory ports, captures and builders.

Nothing here is a test; pytest collects none of it (no ``test_`` modules).
"""
