"""Where images go: ECR (through the amazon provider's EcrHook) or any v2 registry."""
