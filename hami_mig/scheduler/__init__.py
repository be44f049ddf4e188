"""The cluster side: a kube-scheduler extender (filter, prioritize, bind) and a mutating webhook.

It plans with the node agent's own planner (`mig/`) from the GPU state nodes publish in annotations
(`hami.io/node-nvidia-register` + the pods' `hami-mig.io/instances` and pending device reservations),
and speaks HAMi's pod annotations (`kube/`). It never imports `nvml/` or `plugin/`.
"""
