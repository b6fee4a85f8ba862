"""Files for the runners other than local mode: the container entrypoint, compose and KubeRay.

Everything here is rendered from the same platform config and the same definitions local mode
uses (config.ray_node, config.names, serving.serve_config, deploy/ templates).
"""
