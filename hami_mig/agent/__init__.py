"""The node agent: wires the kubelet plugin, the API server, NVML and the planner together."""
