"""The test rig: real services on free loopback ports, started and stopped by the suite."""
