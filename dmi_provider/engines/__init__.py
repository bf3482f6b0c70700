"""How bytes move: the registry engine is dmi_provider.registry (default); docker.py goes through a daemon."""
