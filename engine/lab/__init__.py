"""Local lab: real processes on loopback for `opctl lab` / `opctl demo`, and for tests."""
