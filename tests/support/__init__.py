"""Helpers shared by the tests: cluster access, waits on watches, fluent builders."""
