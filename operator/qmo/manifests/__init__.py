"""Pure builders of the objects qmo creates: Jobs, Deployments, Services, ConfigMaps, PVCs.

Each returns a dict ready for server-side apply; none does I/O or imports kopf/kubernetes.
"""
