"""The deploy tests' Helm fixtures (chart, helm, render, render_raw, kv), for the scheduler's chart tests."""

from tests.deploy.conftest import chart, helm, render, render_raw  # noqa: F401
from tests.deploy.test_chart_render import kv  # noqa: F401
