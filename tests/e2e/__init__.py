"""End-to-end acceptance suites of issue 2."""
