"""The pure MIG core: catalogue, geometries, layouts and the planner. No I/O, no drivers, no API clients."""
