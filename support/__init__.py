"""Shared by tests, benchmarks and reliability runs: our own servers on loopback, the emulator's
control surface, the seeded event generators and the fault matrix. Import the modules directly."""
