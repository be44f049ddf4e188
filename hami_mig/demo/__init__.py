"""`hami-mig demo`: the whole product on a laptop (simulated GPUs, fake kubelet and API server, real agent)."""
