"""pytest plugin for the NNX conformance suite (being written; see docs/architecture.md)."""
