"""Generated kubelet device plugin API v1beta1 modules; regenerate with hami_mig.plugin.codegen."""
