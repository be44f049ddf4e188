"""Faithful test doubles shared by the tests and the demo; production code never imports this package."""
