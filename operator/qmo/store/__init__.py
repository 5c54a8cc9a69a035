"""The engine store's code that runs in pods: object-store access, publishing, the node cache.

Used by qmo-builder (publishing an artifact), by the serving pods' fetch step and by the
store's garbage-collection and migration Jobs (qmo-store). The operator process never imports
it: it writes the pods that run it (qmo.manifests) and reads their results.
"""
