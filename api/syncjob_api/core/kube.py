"""The API's own Kubernetes client: from KUBECONFIG when set, else the in-cluster service account.

Every call the API makes names a short timeout, so a dead API server costs a request seconds, not minutes.
"""

from __future__ import annotations

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

# (connect, read) seconds for ordinary calls; watches set their own.
REQUEST_TIMEOUT = (3.0, 10.0)


def api_client(kubeconfig: str | None) -> client.ApiClient:
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        return config.new_client_from_config()
    return client.ApiClient(configuration)
