"""The local Kubernetes control plane (real upstream binaries + kwok GPU nodes) and the demo."""
